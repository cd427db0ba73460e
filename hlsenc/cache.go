package hlsenc

import (
	"container/list"
	"sync"
)

// ObjectID names one encrypted resource in a Cache.
type ObjectID struct {
	Stream    string
	Rendition string
	MSN       uint64
	// Part is the part index, or -1 for the whole segment.
	Part int
	// KeyID is the id of the key used: part of the identity, so that a
	// stream that restarts with new keys never hits an old entry.
	KeyID string
}

// Cache keeps the ciphertexts of recently served resources, bounded in
// bytes, least recently used first out. Segments and parts are immutable,
// so with it each is encrypted about once however many players fetch it,
// even when they all ask at the same moment (as LL-HLS players released by
// a new part do): concurrent misses of one resource share one encryption.
// Returned slices are shared: never modify them. It is safe for concurrent
// use.
type Cache struct {
	max int64

	mu       sync.Mutex
	size     int64
	lru      list.List // of *cacheEntry, most recent at the front
	m        map[ObjectID]*list.Element
	inflight map[ObjectID]*encryptCall
	count    uint64 // encryptions done
}

type cacheEntry struct {
	id   ObjectID
	data []byte
}

// encryptCall is an encryption in progress, which concurrent misses of the
// same resource wait for.
type encryptCall struct {
	done      chan struct{}
	data      []byte
	forgotten bool // Forget ran meanwhile: do not keep the result
}

// NewCache returns a cache holding up to maxBytes of ciphertext.
func NewCache(maxBytes int64) *Cache {
	return &Cache{max: maxBytes, m: make(map[ObjectID]*list.Element), inflight: make(map[ObjectID]*encryptCall)}
}

// Encrypt returns the ciphertext of plaintext under key and iv, from the
// cache when id is there. A miss encrypts; concurrent misses of the same
// id wait for that encryption rather than do their own.
func (c *Cache) Encrypt(id ObjectID, key Key, iv [KeySize]byte, plaintext []byte) []byte {
	id.KeyID = key.ID()
	c.mu.Lock()
	if e, ok := c.m[id]; ok {
		c.lru.MoveToFront(e)
		data := e.Value.(*cacheEntry).data
		c.mu.Unlock()
		return data
	}
	if call, ok := c.inflight[id]; ok {
		c.mu.Unlock()
		<-call.done
		if call.data == nil { // the encryption panicked: try again here
			return EncryptSegment(key, iv, plaintext)
		}
		return call.data
	}
	call := &encryptCall{done: make(chan struct{})}
	c.inflight[id] = call
	c.count++
	c.mu.Unlock()

	defer func() {
		// Even if EncryptSegment panicked: the waiters must go on.
		c.mu.Lock()
		delete(c.inflight, id)
		c.mu.Unlock()
		close(call.done)
	}()
	data := EncryptSegment(key, iv, plaintext)
	call.data = data
	c.mu.Lock()
	defer c.mu.Unlock()
	if int64(len(data)) > c.max || call.forgotten {
		return data
	}
	c.m[id] = c.lru.PushFront(&cacheEntry{id: id, data: data})
	c.size += int64(len(data))
	for c.size > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		ent := old.Value.(*cacheEntry)
		delete(c.m, ent.id)
		c.size -= int64(len(ent.data))
	}
	return data
}

// Forget drops every entry of stream (encryptions in progress are not
// kept either).
func (c *Cache) Forget(stream string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, call := range c.inflight {
		if id.Stream == stream {
			call.forgotten = true
		}
	}
	for e := c.lru.Front(); e != nil; {
		next := e.Next()
		if ent := e.Value.(*cacheEntry); ent.id.Stream == stream {
			c.lru.Remove(e)
			delete(c.m, ent.id)
			c.size -= int64(len(ent.data))
		}
		e = next
	}
}

// Size returns the bytes held.
func (c *Cache) Size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

// Encryptions returns the number of encryptions the cache has done (its
// misses, concurrent ones counted once).
func (c *Cache) Encryptions() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}
