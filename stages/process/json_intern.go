package process

// This file holds the interner that turns records' top-level keys into
// field names without a string per record.

import (
	"sync"
	"sync/atomic"
)

// interner turns the top-level keys of records into field names: a key
// seen before is looked up without allocating (records of one stream
// share their keys), a new one is added while the table is small.
// Lookups take no lock: the table is replaced, never changed.
type interner struct {
	mu sync.Mutex
	m  atomic.Pointer[map[string]string]
}

// maxInterned bounds the table: records with ever new keys (ids as keys)
// then cost a string per key, as they did before.
const maxInterned = 1024

func (in *interner) get(b []byte) string {
	if m := in.m.Load(); m != nil {
		if s, ok := (*m)[string(b)]; ok {
			return s
		}
	}
	s := string(b)
	in.mu.Lock()
	defer in.mu.Unlock()
	old := in.m.Load()
	if old != nil && len(*old) >= maxInterned {
		return s
	}
	m := make(map[string]string, 1+lenOf(old))
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[s] = s
	in.m.Store(&m)
	return s
}

func lenOf(m *map[string]string) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// stringRun returns the length of the run of plain string bytes at the
// start of b: bytes that are not '"', '\\' nor a control character (under
// 0x20), eight at a time; high reports whether the run holds a byte of
