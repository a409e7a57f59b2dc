package state

/*
#include <stdlib.h>
#include <rocksdb/c.h>

// eddy_multi_get looks up the n keys packed in buf (key i is sizes[i]
// bytes, right after key i-1) with RocksDB's batched MultiGet, which
// sorts them and reads each data block once for the keys it holds.
static void eddy_multi_get(rocksdb_t* db, const rocksdb_readoptions_t* ro,
                           rocksdb_column_family_handle_t* cf, size_t n,
                           const char* buf, const size_t* sizes,
                           rocksdb_pinnableslice_t** vals, char** errs) {
  const char** keys = malloc(n * sizeof(char*));
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    keys[i] = buf + off;
    off += sizes[i];
  }
  rocksdb_batched_multi_get_cf(db, ro, cf, n, keys, sizes, vals, errs, 0);
  free(keys);
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/linxGnu/grocksdb"
)

// The C pointer is the first field of grocksdb.DB, ColumnFamilyHandle and
// ReadOptions (as for Options in memory.go).
func cDB(db *grocksdb.DB) *C.rocksdb_t { return *(**C.rocksdb_t)(unsafe.Pointer(db)) }
func cCF(h *grocksdb.ColumnFamilyHandle) *C.rocksdb_column_family_handle_t {
	return *(**C.rocksdb_column_family_handle_t)(unsafe.Pointer(h))
}
func cRO(o *grocksdb.ReadOptions) *C.rocksdb_readoptions_t {
	return *(**C.rocksdb_readoptions_t)(unsafe.Pointer(o))
}

// MultiGetFunc looks up keys in cf with one batched RocksDB MultiGet (one
// cgo call; keys sharing a data block read it once) and calls fn(i, val)
// for every keys[i] present, in order of i. val is RocksDB's memory, valid
// only during the call. The first error of fn stops the calls and is
// returned.
func (d *DB) MultiGetFunc(cf *CF, keys [][]byte, fn func(i int, val []byte) error) error {
	if len(keys) == 0 {
		return nil
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if err := d.usable(); err != nil {
		return err
	}
	n := 0
	for _, k := range keys {
		n += len(k)
	}
	buf := make([]byte, 0, max(n, 1))
	sizes := make([]C.size_t, len(keys))
	for i, k := range keys {
		buf = append(buf, k...)
		sizes[i] = C.size_t(len(k))
	}
	vals := make([]*C.rocksdb_pinnableslice_t, len(keys))
	errs := make([]*C.char, len(keys))
	C.eddy_multi_get(cDB(d.db), cRO(d.ro), cCF(d.handle(cf)), C.size_t(len(keys)),
		(*C.char)(unsafe.Pointer(unsafe.SliceData(buf))), unsafe.SliceData(sizes),
		unsafe.SliceData(vals), unsafe.SliceData(errs))
	var first error
	for i := range keys {
		if errs[i] != nil {
			if first == nil {
				first = fmt.Errorf("state: multi-get keys: %s", C.GoString(errs[i]))
			}
			C.free(unsafe.Pointer(errs[i]))
		}
		v := vals[i]
		if v == nil {
			continue
		}
		if first == nil {
			var l C.size_t
			val := []byte{}
			if p := C.rocksdb_pinnableslice_value(v, &l); p != nil {
				val = unsafe.Slice((*byte)(unsafe.Pointer(p)), int(l))
			}
			first = fn(i, val)
		}
		C.rocksdb_pinnableslice_destroy(v)
	}
	return first
}

// MultiGet returns copies of the values of keys in cf, nil where a key is
// absent.
func (d *DB) MultiGet(cf *CF, keys ...[]byte) ([][]byte, error) {
	out := make([][]byte, len(keys))
	err := d.MultiGetFunc(cf, keys, func(i int, v []byte) error {
		out[i] = append([]byte{}, v...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
