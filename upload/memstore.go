package upload

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// MemStore is an in-memory Store for unit tests. SetDown makes every call
// fail with ErrNotConnected, as a dead uplink would; Now (default
// time.Now) stamps objects, so tests can age them.
type MemStore struct {
	Now func() time.Time

	mu      sync.Mutex
	objects map[string]memObject
	down    bool
	puts    int64
	putSize int64
}

type memObject struct {
	data []byte
	mod  time.Time
}

// NewMemStore returns an empty in-memory store.
func NewMemStore() *MemStore { return &MemStore{objects: map[string]memObject{}} }

func (s *MemStore) String() string { return "mem://" }

// SetDown cuts (true) or restores (false) the link.
func (s *MemStore) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// Puts returns the number of successful Puts and the bytes they stored.
func (s *MemStore) Puts() (n, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.puts, s.putSize
}

// Keys returns every key, sorted.
func (s *MemStore) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.objects))
	for k := range s.objects {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// SetModTime changes an object's time (tests of the orphan grace period).
func (s *MemStore) SetModTime(key string, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.objects[key]; ok {
		o.mod = t
		s.objects[key] = o
	}
}

func (s *MemStore) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *MemStore) check(ctx context.Context, op, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.down {
		return fmt.Errorf("upload: %s %s: %w", op, key, ErrNotConnected)
	}
	return nil
}

func (s *MemStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	data, err := io.ReadAll(ctxReader{ctx, r})
	if err != nil {
		return fmt.Errorf("upload: put %s: %w", key, err)
	}
	if int64(len(data)) != size {
		return fmt.Errorf("upload: put %s: read %d bytes, want %d", key, len(data), size)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx, "put", key); err != nil {
		return err
	}
	s.objects[key] = memObject{data: data, mod: s.now()}
	s.puts++
	s.putSize += size
	return nil
}

func (s *MemStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx, "get", key); err != nil {
		return nil, err
	}
	o, ok := s.objects[key]
	if !ok {
		return nil, fmt.Errorf("upload: get %s: %w", key, ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(o.data)), nil
}

func (s *MemStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx, "stat", key); err != nil {
		return ObjectInfo{}, err
	}
	o, ok := s.objects[key]
	if !ok {
		return ObjectInfo{}, fmt.Errorf("upload: stat %s: %w", key, ErrNotFound)
	}
	return ObjectInfo{Key: key, Size: int64(len(o.data)), ModTime: o.mod}, nil
}

func (s *MemStore) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx, "list", prefix); err != nil {
		return nil, err
	}
	var out []ObjectInfo
	for k, o := range s.objects {
		if strings.HasPrefix(k, prefix) {
			out = append(out, ObjectInfo{Key: k, Size: int64(len(o.data)), ModTime: o.mod})
		}
	}
	slices.SortFunc(out, func(a, b ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

func (s *MemStore) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx, "delete", key); err != nil {
		return err
	}
	delete(s.objects, key)
	return nil
}
