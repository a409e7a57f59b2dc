package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

var (
	// ErrNotFound is returned by Store.Get and Store.Stat for a key the
	// remote does not hold.
	ErrNotFound = errors.New("upload: object not found")
	// ErrNotConnected is what the in-memory store returns while its link
	// is down; real stores return their transport's error.
	ErrNotConnected = errors.New("upload: not connected")
)

// ObjectInfo describes one remote object.
type ObjectInfo struct {
	Key     string    // relative to the store's root, '/'-separated
	Size    int64     // stored bytes
	ModTime time.Time // when the object was written (the remote's clock)
}

// Store is the narrow interface eddy needs from remote storage, in the
// spirit of pebble's objstorage/remote.Storage: whole immutable objects
// named by '/'-separated keys relative to the store's root (the prefix of
// upload.remote). Every method is safe for concurrent use.
//
// A Put is all or nothing: a reader sees either no object or the whole
// object, never a prefix of it (S3 PUT and multipart completion are atomic;
// the file store renames a fully synced temporary file into place). A Put
// to an existing key replaces it.
type Store interface {
	// Put stores size bytes read from r under key. r must yield exactly
	// size bytes.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get opens the object at key for reading; ErrNotFound if there is
	// none. The caller closes the reader.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat returns the object's size and time; ErrNotFound if there is none.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List returns every object whose key starts with prefix, recursively,
	// in key order.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Delete removes the object at key; a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// String names the remote for logs and figures: never credentials.
	String() string
}

// RemoteOptions is the upload: section of the configuration, as far as
// opening the remote store goes.
type RemoteOptions struct {
	// Remote is s3://bucket/prefix or file:///absolute/path.
	Remote string
	// Endpoint is host[:port] (HTTPS) or http(s)://host[:port] for S3;
	// empty means s3.amazonaws.com.
	Endpoint  string
	Region    string
	PathStyle bool
	// Credentials: AccessKeyID and SecretAccessKey, or CredentialsFile (an
	// AWS shared credentials file, profile "default" or $AWS_PROFILE), or
	// neither: then the environment (AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY, or MINIO_ACCESS_KEY and MINIO_SECRET_KEY),
	// then ~/.aws/credentials.
	AccessKeyID     string
	SecretAccessKey string
	CredentialsFile string
	// FS is the file system a file:// remote writes through (nil: the OS).
	FS fileutil.FS
}

// OpenStore opens the remote store o.Remote names.
func OpenStore(o RemoteOptions) (Store, error) {
	u, err := url.Parse(o.Remote)
	if err != nil {
		return nil, fmt.Errorf("upload: remote %q: %w", o.Remote, err)
	}
	switch u.Scheme {
	case "s3":
		return NewS3Store(S3Options{
			Endpoint: o.Endpoint, Bucket: u.Host, Prefix: strings.Trim(u.Path, "/"), Region: o.Region,
			PathStyle: o.PathStyle, AccessKeyID: o.AccessKeyID, SecretAccessKey: o.SecretAccessKey,
			CredentialsFile: o.CredentialsFile,
		})
	case "file":
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return nil, fmt.Errorf("upload: remote %q: a file:// remote needs an absolute path, as in file:///mnt/backup/eddy", o.Remote)
		}
		return NewFileStoreFS(o.FS, u.Path)
	}
	return nil, fmt.Errorf("upload: remote %q: want s3://bucket/prefix or file:///path", o.Remote)
}

// joinKey joins key parts with '/', skipping empty ones.
func joinKey(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		p = strings.Trim(p, "/")
		if p == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(p)
	}
	return b.String()
}
