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
// so with it each is encrypted about once however many players fetch it.
// Returned slices are shared: never modify them. It is safe for concurrent
// use.
type Cache struct {
	max int64

	mu   sync.Mutex
	size int64
	lru  list.List // of *cacheEntry, most recent at the front
	m    map[ObjectID]*list.Element
}

type cacheEntry struct {
	id   ObjectID
	data []byte
}

// NewCache returns a cache holding up to maxBytes of ciphertext.
func NewCache(maxBytes int64) *Cache {
	return &Cache{max: maxBytes, m: make(map[ObjectID]*list.Element)}
}

// Encrypt returns the ciphertext of plaintext under key and iv, from the
// cache when id is there. Concurrent misses of one id may both encrypt;
// the results are identical.
func (c *Cache) Encrypt(id ObjectID, key Key, iv [KeySize]byte, plaintext []byte) []byte {
	id.KeyID = key.ID()
	c.mu.Lock()
	if e, ok := c.m[id]; ok {
		c.lru.MoveToFront(e)
		data := e.Value.(*cacheEntry).data
		c.mu.Unlock()
		return data
	}
	c.mu.Unlock()

	data := EncryptSegment(key, iv, plaintext)
	if int64(len(data)) > c.max {
		return data
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[id]; ok { // another request won the race
		c.lru.MoveToFront(e)
		return e.Value.(*cacheEntry).data
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

// Forget drops every entry of stream.
func (c *Cache) Forget(stream string) {
	c.mu.Lock()
	defer c.mu.Unlock()
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
