package state

import (
	"bufio"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// warmShare is the share of the memory the kernel reports available that
// a restored DB's SST files may take for warmPageCache to read them in.
const warmShare = 0.5

// warmChunk is the range of one WILLNEED call. Linux reads at most
// max(read_ahead_kb, the device's largest request) of the range one call
// names (force_page_cache_ra) and drops the rest: one call for a whole
// 64 MiB SST file warmed its first 8 MiB here (read_ahead_kb 8192) and
// would warm 128 KiB with the common default.
const warmChunk = 128 << 10

// warmPageCache asks the kernel to read the SST files of a restored DB
// into the page cache (posix_fadvise WILLNEED per warmChunk, which starts
// the reads and does not wait for them), one file after another from a
// goroutine, so that the replay after a recovery reads its state from
// memory instead of one random disk read per key: the block cache is
// empty after a restart and far smaller than the state. It does nothing
// when the files are more than warmShare of MemAvailable, where the
// readahead would only push other pages out. Errors are only logged:
// this is a hint.
func warmPageCache(paths []string, sizes int64, log *slog.Logger) {
	if len(paths) == 0 {
		return
	}
	avail, ok := memAvailable()
	if !ok || float64(sizes) > warmShare*float64(avail) {
		log.Info("state: not warming the page cache: SST files too large for the memory available",
			"sst_bytes", sizes, "mem_available", avail)
		return
	}
	go func() {
		start := time.Now()
		for _, p := range paths {
			f, err := os.Open(p)
			if err != nil {
				log.Debug("state: warm page cache", "file", p, "err", err)
				continue
			}
			if err := willNeed(f); err != nil {
				log.Debug("state: warm page cache", "file", p, "err", err)
			}
			f.Close()
		}
		log.Debug("state: page cache readahead started", "files", len(paths), "bytes", sizes, "took", time.Since(start))
	}()
}

// willNeed advises WILLNEED over the whole of f, warmChunk at a time.
func willNeed(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	for off := int64(0); off < fi.Size(); off += warmChunk {
		if err := unix.Fadvise(int(f.Fd()), off, warmChunk, unix.FADV_WILLNEED); err != nil {
			return err
		}
	}
	return nil
}

// memAvailable is MemAvailable of /proc/meminfo in bytes.
func memAvailable() (int64, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			fs := strings.Fields(rest)
			if len(fs) == 0 {
				return 0, false
			}
			kb, err := strconv.ParseInt(fs[0], 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// Resident returns how many bytes of the file at path are in the page
// cache (mincore) and its size.
func Resident(path string) (resident, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return 0, 0, err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, 0, err
	}
	defer unix.Munmap(mem)
	page := int64(os.Getpagesize())
	vec := make([]byte, (fi.Size()+page-1)/page)
	// x/sys/unix has no Mincore wrapper on linux.
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(mem))),
		uintptr(len(mem)), uintptr(unsafe.Pointer(unsafe.SliceData(vec)))); e != 0 {
		return 0, 0, e
	}
	for _, v := range vec {
		if v&1 != 0 {
			resident += page
		}
	}
	return min(resident, fi.Size()), fi.Size(), nil
}
