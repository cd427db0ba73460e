package relay

import (
	"container/list"
	"sync"
	"time"
)

// entryOverhead approximates the bytes an entry costs beyond its body and
// key (the entry, its list element, map slot and header slices).
const entryOverhead = 256

// object is a complete upstream response: its status, the headers relayed
// and its body. Once built it is never modified, so every waiter and every
// cache hit hands out the same slices.
type object struct {
	status int
	hdr    header
	body   []byte
}

// lru is a bytes-bounded least-recently-used cache of immutable objects,
// with a time to live.
type lru struct {
	max int64
	ttl time.Duration
	m   *relayMetrics

	mu    sync.Mutex
	size  int64
	ll    *list.List // of *cacheEntry, most recent first
	items map[string]*list.Element
}

type cacheEntry struct {
	key   string
	obj   *object
	added time.Time
	size  int64
}

func newLRU(max int64, ttl time.Duration, m *relayMetrics) *lru {
	return &lru{max: max, ttl: ttl, m: m, ll: list.New(), items: make(map[string]*list.Element)}
}

// get returns the object cached under key, if any and not expired.
func (c *lru) get(key string, now time.Time) (*object, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if now.Sub(e.added) > c.ttl {
		c.removeLocked(el)
		return nil, false
	}
	c.ll.MoveToFront(el)
	return e.obj, true
}

// add caches obj under key, evicting the least recently used objects past
// the bound. An object larger than an eighth of the bound is not kept: it
// would flush the live objects of every other stream.
func (c *lru) add(key string, obj *object, now time.Time) {
	size := int64(len(obj.body)+len(key)) + entryOverhead
	if size > c.max/8 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.removeLocked(el)
	}
	c.items[key] = c.ll.PushFront(&cacheEntry{key: key, obj: obj, added: now, size: size})
	c.size += size
	for c.size > c.max {
		c.removeLocked(c.ll.Back())
	}
	c.m.bytes.Set(float64(c.size))
}

func (c *lru) removeLocked(el *list.Element) {
	e := c.ll.Remove(el).(*cacheEntry)
	delete(c.items, e.key)
	c.size -= e.size
	c.m.bytes.Set(float64(c.size))
}
