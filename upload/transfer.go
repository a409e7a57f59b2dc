package upload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/golang/snappy"
)

// compressInMemory is the largest file compressed in memory; larger ones
// (full snapshots) are compressed into a temporary file in
// Options.DataDir.Upload().
const compressInMemory = 32 << 20

// uploadFile sends one local file of checkpoint id to p.rel and returns
// the stored size. The file's CRC32C is checked against the metadata on
// the way: a local file that does not match is not left on the remote
// (errLocal).
func (u *Uploader) uploadFile(ctx context.Context, id int64, p plan) (int64, error) {
	path := filepath.Join(u.o.Local.TaskDir(id, p.task), p.file.Name)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: %s is gone", errLocal, path)
	}
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errLocal, err)
	}
	defer f.Close()
	key := u.layout.Key(p.rel)
	if p.encoding == EncodingSnappy {
		body, size, cleanup, err := u.compress(f, p)
		if err != nil {
			return 0, err
		}
		defer cleanup()
		if err := u.o.Store.Put(ctx, key, u.meter(ctx, body), size); err != nil {
			return 0, err
		}
		return size, nil
	}
	cr := &crcReader{r: f}
	if err := u.o.Store.Put(ctx, key, u.meter(ctx, cr), p.file.Size); err != nil {
		return 0, err
	}
	if cr.n != p.file.Size || cr.crc != p.file.CRC32C {
		// Read something else than the checkpoint recorded: take it back.
		dctx, cancel := u.opCtx(context.WithoutCancel(ctx))
		derr := u.o.Store.Delete(dctx, key)
		cancel()
		return 0, errors.Join(fmt.Errorf("%w: %s has crc32c %08x over %d bytes, metadata says %08x over %d",
			errLocal, path, cr.crc, cr.n, p.file.CRC32C, p.file.Size), derr)
	}
	return p.file.Size, nil
}

// compress snappy-compresses f (framing format) into memory or a temporary
// file, checking its CRC32C against the metadata.
func (u *Uploader) compress(f *os.File, p plan) (io.Reader, int64, func(), error) {
	cr := &crcReader{r: f}
	check := func() error {
		if cr.n != p.file.Size || cr.crc != p.file.CRC32C {
			return fmt.Errorf("%w: %s has crc32c %08x over %d bytes, metadata says %08x over %d",
				errLocal, f.Name(), cr.crc, cr.n, p.file.CRC32C, p.file.Size)
		}
		return nil
	}
	if p.file.Size <= compressInMemory {
		var buf bytes.Buffer
		w := snappy.NewBufferedWriter(&buf)
		if _, err := io.Copy(w, cr); err != nil {
			return nil, 0, nil, fmt.Errorf("%w: read %s: %v", errLocal, f.Name(), err)
		}
		if err := w.Close(); err != nil {
			return nil, 0, nil, err
		}
		if err := check(); err != nil {
			return nil, 0, nil, err
		}
		return bytes.NewReader(buf.Bytes()), int64(buf.Len()), func() {}, nil
	}
	tmp, err := os.CreateTemp(u.o.DataDir.Upload(), "compress-*.tmp")
	if err != nil {
		return nil, 0, nil, err
	}
	cleanup := func() { tmp.Close(); os.Remove(tmp.Name()) }
	w := snappy.NewBufferedWriter(tmp)
	_, err = io.Copy(w, cr)
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = check()
	}
	var size int64
	if err == nil {
		size, err = tmp.Seek(0, io.SeekCurrent)
	}
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		cleanup()
		return nil, 0, nil, err
	}
	return tmp, size, cleanup, nil
}

// meter counts the bytes the store reads as sent and holds them to the
// bandwidth cap: a token bucket shared by all parallel uploads, refilled
// at Bandwidth bytes per second, holding at most 64 KiB (or one second's
// worth, if less), so that bursts stay short.
func (u *Uploader) meter(ctx context.Context, r io.Reader) io.Reader {
	return &meteredReader{u: u, ctx: ctx, r: r}
}

type meteredReader struct {
	u   *Uploader
	ctx context.Context
	r   io.Reader
}

func (m *meteredReader) Read(p []byte) (int, error) {
	lim := m.u.lim.Load()
	if lim != nil && len(p) > lim.chunk {
		p = p[:lim.chunk]
	}
	n, err := m.r.Read(p)
	if n > 0 {
		if lim != nil {
			if werr := lim.l.WaitN(m.ctx, n); werr != nil {
				return 0, werr
			}
		}
		m.u.stats.bytesSent.Add(int64(n))
	}
	return n, err
}

type crcReader struct {
	r   io.Reader
	crc uint32
	n   int64
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	c.n += int64(n)
	return n, err
}

func byteReader(b []byte) io.Reader { return bytes.NewReader(b) }

func readAllLimit(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}
