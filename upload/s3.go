package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Options configure NewS3Store.
type S3Options struct {
	// Endpoint is host[:port] (HTTPS), https://host[:port] or
	// http://host[:port]; empty means s3.amazonaws.com.
	Endpoint string
	Bucket   string
	// Prefix is the root of every key, without leading or trailing '/'.
	Prefix string
	Region string
	// PathStyle addresses buckets as endpoint/bucket/key (MinIO,
	// versitygw, most S3-compatible servers) instead of bucket.endpoint.
	PathStyle bool
	// Credentials, see RemoteOptions.
	AccessKeyID     string
	SecretAccessKey string
	CredentialsFile string
	// Transport overrides the HTTP transport (tests). The default one has
	// short dial and response-header timeouts, so that a dead uplink shows
	// as an error within seconds instead of a hung request.
	Transport http.RoundTripper
	// MaxRetries is minio-go's own retry count per request; the default 1
	// leaves retrying to the uploader's backoff.
	MaxRetries int
}

// S3Store is a Store on an S3-compatible bucket, through minio-go.
type S3Store struct {
	c      *minio.Client
	bucket string
	prefix string
	name   string
}

// NewS3Store returns a store on o.Bucket under o.Prefix. It does not
// contact the server: a store can be created while the uplink is down.
// Credentials are never logged or shown; String names only the endpoint,
// bucket and prefix.
func NewS3Store(o S3Options) (*S3Store, error) {
	if o.Bucket == "" {
		return nil, errors.New("upload: s3: no bucket")
	}
	endpoint, secure := o.Endpoint, true
	if endpoint == "" {
		endpoint = "s3.amazonaws.com"
	}
	if strings.Contains(endpoint, "://") {
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("upload: s3: endpoint %q: want host[:port] or http(s)://host[:port]", o.Endpoint)
		}
		endpoint, secure = u.Host, u.Scheme == "https"
	}
	var creds *credentials.Credentials
	switch {
	case o.AccessKeyID != "":
		creds = credentials.NewStaticV4(o.AccessKeyID, o.SecretAccessKey, "")
	case o.CredentialsFile != "":
		if _, err := os.Stat(o.CredentialsFile); err != nil {
			return nil, fmt.Errorf("upload: s3: credentials file: %w", err)
		}
		creds = credentials.NewFileAWSCredentials(o.CredentialsFile, "")
	default:
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{}, &credentials.EnvMinio{}, &credentials.FileAWSCredentials{},
		})
	}
	tr := o.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}).DialContext
		t.ResponseHeaderTimeout = time.Minute
		t.TLSHandshakeTimeout = 10 * time.Second
		t.MaxIdleConnsPerHost = 32
		tr = t
	}
	lookup := minio.BucketLookupAuto
	if o.PathStyle {
		lookup = minio.BucketLookupPath
	}
	retries := o.MaxRetries
	if retries <= 0 {
		retries = 1
	}
	c, err := minio.New(endpoint, &minio.Options{
		Creds: creds, Secure: secure, Region: o.Region, BucketLookup: lookup, Transport: tr, MaxRetries: retries,
	})
	if err != nil {
		return nil, fmt.Errorf("upload: s3: %w", err)
	}
	scheme := "https"
	if !secure {
		scheme = "http"
	}
	name := fmt.Sprintf("s3://%s/%s (%s://%s)", o.Bucket, strings.Trim(o.Prefix, "/"), scheme, endpoint)
	return &S3Store{c: c, bucket: o.Bucket, prefix: strings.Trim(o.Prefix, "/"), name: name}, nil
}

func (s *S3Store) String() string { return s.name }

func (s *S3Store) key(k string) string {
	if s.prefix == "" {
		return k
	}
	return s.prefix + "/" + k
}

func (s *S3Store) rel(k string) string {
	if s.prefix == "" {
		return k
	}
	return strings.TrimPrefix(k, s.prefix+"/")
}

// Put uploads r with PutObject: one request up to 16 MiB, multipart
// (parts of at least 16 MiB, uploaded in order) above.
func (s *S3Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	_, err := s.c.PutObject(ctx, s.bucket, s.key(key), r, size, minio.PutObjectOptions{
		ContentType: "application/octet-stream", DisableContentSha256: false, NumThreads: 1,
	})
	if err != nil {
		return fmt.Errorf("upload: put %s: %w", key, err)
	}
	return nil
}

func (s *S3Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	// GetObject is lazy; Stat first so a missing object is ErrNotFound here
	// rather than at the first Read.
	obj, err := s.c.GetObject(ctx, s.bucket, s.key(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, s.err("get", key, err)
	}
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, s.err("get", key, err)
	}
	return obj, nil
}

func (s *S3Store) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	oi, err := s.c.StatObject(ctx, s.bucket, s.key(key), minio.StatObjectOptions{})
	if err != nil {
		return ObjectInfo{}, s.err("stat", key, err)
	}
	return ObjectInfo{Key: key, Size: oi.Size, ModTime: oi.LastModified}, nil
}

func (s *S3Store) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	p := s.key(prefix)
	var out []ObjectInfo
	for oi := range s.c.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: p, Recursive: true}) {
		if oi.Err != nil {
			return nil, s.err("list", prefix, oi.Err)
		}
		if strings.HasSuffix(oi.Key, "/") {
			continue // a directory marker
		}
		out = append(out, ObjectInfo{Key: s.rel(oi.Key), Size: oi.Size, ModTime: oi.LastModified})
	}
	return out, nil
}

func (s *S3Store) Delete(ctx context.Context, key string) error {
	if err := s.c.RemoveObject(ctx, s.bucket, s.key(key), minio.RemoveObjectOptions{}); err != nil {
		if isNoSuchKey(err) {
			return nil
		}
		return fmt.Errorf("upload: delete %s: %w", key, err)
	}
	return nil
}

func (s *S3Store) err(op, key string, err error) error {
	if isNoSuchKey(err) {
		return fmt.Errorf("upload: %s %s: %w", op, key, ErrNotFound)
	}
	return fmt.Errorf("upload: %s %s: %w", op, key, err)
}

func isNoSuchKey(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.Code == minio.NoSuchKey || r.StatusCode == http.StatusNotFound && r.Code != minio.NoSuchBucket
}
