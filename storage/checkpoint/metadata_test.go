package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"reflect"
	"strings"
	"testing"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

func sampleMetadata() *Metadata {
	return &Metadata{
		Version: Version, ID: 7, Job: "appliance-1",
		TriggerTimestamp: 1_700_000_000_000, CompletedTimestamp: 1_700_000_000_312,
		Mode: "exactly_once", Incremental: true, Compression: "none", Parallelism: 2, MaxParallelism: 128,
		Sources: map[string]SourceState{"readings": {Offset: 1 << 40, MaxTimestamp: 1_699_999_999_999}},
		Tasks: map[string]TaskState{
			"per_device_minute-0": {
				Stage: "per_device_minute", Index: 0, KeyGroupStart: 0, KeyGroupEnd: 63, Kind: KindNative,
				Files: []File{
					{Name: "000012.sst", Size: 1000, CRC32C: 0xdeadbeef, SST: true},
					{Name: "MANIFEST-000005", Size: 200, CRC32C: 1},
					{Name: TaskStateFile, Size: 40, CRC32C: 0xffffffff},
				},
				StateSize: 1240, CheckpointedSize: 240,
			},
			"per_device_minute-1": {
				Stage: "per_device_minute", Index: 1, KeyGroupStart: 64, KeyGroupEnd: 127, Kind: KindNative,
				Files: []File{}, StateSize: 0,
			},
			"source-readings": {Stage: "source", Kind: KindNone, Files: []File{{Name: TaskStateFile, Size: 30}}, StateSize: 30, CheckpointedSize: 30},
		},
	}
}

func TestEncodeMetadata(t *testing.T) {
	md := sampleMetadata()
	data, err := EncodeMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	// A person can read it: indented JSON with snake_case names.
	for _, want := range []string{
		`"version": 1,`, `"trigger_timestamp": 1700000000000,`, `"max_parallelism": 128,`,
		`"key_group_start": 64,`, `"checkpointed_size": 240`, `"max_timestamp": 1699999999999`,
		`"offset": 1099511627776`, `"crc32c": 3735928559,`, `"sst": true`, `"files": []`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("encoding lacks %s:\n%s", want, text)
		}
	}
	// Trailer: "crc32c <8 hex>\n" over everything before it.
	i := strings.LastIndex(text[:len(text)-1], "\n") + 1
	body, trailer := data[:i], text[i:]
	if want := fmt.Sprintf("crc32c %08x\n", crc32.Checksum(body, castagnoli)); trailer != want {
		t.Errorf("trailer = %q, want %q", trailer, want)
	}
	if !bytes.HasSuffix(body, []byte("}\n")) {
		t.Errorf("body does not end in a JSON object and a newline")
	}
	got, err := DecodeMetadata(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, md) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, md)
	}
	if md.StateSize() != 1270 || md.CheckpointedSize() != 270 {
		t.Errorf("StateSize %d, CheckpointedSize %d; want 1270, 270", md.StateSize(), md.CheckpointedSize())
	}
	again, _ := EncodeMetadata(got)
	if !bytes.Equal(again, data) {
		t.Error("encoding is not stable")
	}
}

func TestEncodeMetadataNil(t *testing.T) {
	md := &Metadata{Version: Version, ID: 1, Tasks: map[string]TaskState{"t-0": {Kind: KindNone}}}
	data, err := EncodeMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"sources": {}`)) || !bytes.Contains(data, []byte(`"files": []`)) {
		t.Errorf("nil maps and lists should encode as {} and []:\n%s", data)
	}
	if md.Sources != nil || md.Tasks["t-0"].Files != nil {
		t.Error("EncodeMetadata changed its argument")
	}
	if _, err := DecodeMetadata(data); err != nil {
		t.Fatal(err)
	}
}

// TestDecodeMetadataDamage: every truncation and every single flipped byte
// of a _metadata is reported as corruption.
func TestDecodeMetadataDamage(t *testing.T) {
	data, err := EncodeMetadata(sampleMetadata())
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(data) {
		_, err := DecodeMetadata(data[:n])
		if ce := asCorrupt(t, err); ce.Path != MetadataFile {
			t.Fatalf("truncated to %d: path %q", n, ce.Path)
		}
	}
	for i := range data {
		b := bytes.Clone(data)
		b[i] ^= 0x01
		if _, err := DecodeMetadata(b); !fileutil.IsCorruption(err) {
			t.Fatalf("byte %d (%q) flipped: got %v, want corruption", i, data[i], err)
		}
	}
}

// withTrailer returns body followed by its correct trailer.
func withTrailer(body string) []byte {
	return fmt.Appendf([]byte(body), "crc32c %08x\n", crc32.Checksum([]byte(body), castagnoli))
}

func TestDecodeMetadataErrors(t *testing.T) {
	good, _ := EncodeMetadata(sampleMetadata())
	body := string(good[:bytes.LastIndexByte(good[:len(good)-1], '\n')+1])
	for _, tc := range []struct {
		name       string
		data       []byte
		wantErr    error // errors.Is, or nil for a *fileutil.CorruptionError
		wantOffset int64
		wantReason string
	}{
		{"empty", nil, nil, 0, "no trailer"},
		{"no trailer", []byte(body), nil, int64(len(body) - len("}\n")), "not a"},
		{"trailer without newline", good[:len(good)-1], nil, int64(len(good) - 1), "no trailer"},
		{"uppercase trailer digits", append([]byte(body), fmt.Sprintf("crc32c %08X\n", crc32.Checksum([]byte(body), castagnoli)|0xa0000000)...), nil, int64(len(body)), "not a"},
		{"trailer with extra digit", append([]byte(body), "crc32c 123456789\n"...), nil, int64(len(body)), "not a"},
		{"wrong checksum", append([]byte(body), "crc32c 00000000\n"...), nil, -1, "checksum mismatch"},
		{"not JSON", withTrailer("hello\n"), nil, 1, "bad JSON"},
		{"JSON of the wrong shape", withTrailer(`{"version": 1, "tasks": []}` + "\n"), nil, 25, "cannot unmarshal array"},
		{"no version", withTrailer(`{"id": 1}` + "\n"), nil, -1, "no version"},
		{"newer version", withTrailer(`{"version": 2, "id": "a string now"}` + "\n"), ErrUnsupportedVersion, 0, ""},
		{"invalid content", withTrailer(`{"version": 1, "id": 0}` + "\n"), nil, -1, "id 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeMetadata(tc.data)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || fileutil.IsCorruption(err) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				return
			}
			ce := asCorrupt(t, err)
			if ce.Offset != tc.wantOffset {
				t.Errorf("offset %d, want %d (%v)", ce.Offset, tc.wantOffset, err)
			}
			if !strings.Contains(ce.Reason, tc.wantReason) {
				t.Errorf("reason %q, want it to contain %q", ce.Reason, tc.wantReason)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(md *Metadata)
		want   string // "" = valid
	}{
		{"sample", func(*Metadata) {}, ""},
		{"version 0", func(md *Metadata) { md.Version = 0 }, "version 0"},
		{"id 0", func(md *Metadata) { md.ID = 0 }, "id 0"},
		{"empty source name", func(md *Metadata) { md.Sources[""] = SourceState{} }, "empty name"},
		{"task with a slash", func(md *Metadata) { setTask(md, "a/b", func(*TaskState) {}) }, "path separator"},
		{"task dot-dot", func(md *Metadata) { setTask(md, "..", func(*TaskState) {}) }, "not a file name"},
		{"task reserved", func(md *Metadata) { setTask(md, MetadataFile, func(*TaskState) {}) }, "reserved"},
		{"task tmp", func(md *Metadata) { setTask(md, "x.tmp", func(*TaskState) {}) }, ".tmp"},
		{"unknown kind", func(md *Metadata) { setTask(md, "t-0", func(ts *TaskState) { ts.Kind = "rocks" }) }, `kind "rocks"`},
		{"empty key groups", func(md *Metadata) {
			setTask(md, "t-0", func(ts *TaskState) { ts.KeyGroupStart, ts.KeyGroupEnd = 5, 4 })
		}, "key groups [5, 4]"},
		{"file escapes", func(md *Metadata) {
			setTask(md, "t-0", func(ts *TaskState) { ts.Files = []File{{Name: "../x"}} })
		}, "path separator"},
		{"file twice", func(md *Metadata) {
			setTask(md, "t-0", func(ts *TaskState) { ts.Files = []File{{Name: "a"}, {Name: "a"}} })
		}, "listed twice"},
		{"negative size", func(md *Metadata) {
			setTask(md, "t-0", func(ts *TaskState) { ts.Files = []File{{Name: "a", Size: -1}}; ts.StateSize = -1 })
		}, "size -1"},
		{"state size", func(md *Metadata) { setTask(md, "t-0", func(ts *TaskState) { ts.StateSize = 1 }) }, "add up to 0"},
		{"checkpointed size", func(md *Metadata) {
			setTask(md, "t-0", func(ts *TaskState) { ts.CheckpointedSize = 1 })
		}, "checkpointed_size 1"},
		{"several at once", func(md *Metadata) { md.ID = -1; md.Version = 3 }, "version 3, want 1; id -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md := sampleMetadata()
			tc.change(md)
			err := md.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.want == "":
			case !errors.Is(err, ErrInvalidMetadata) || !strings.Contains(err.Error(), tc.want):
				t.Fatalf("got %v, want ErrInvalidMetadata containing %q", err, tc.want)
			}
		})
	}
}

func setTask(md *Metadata, name string, change func(*TaskState)) {
	ts := TaskState{Kind: KindNone}
	change(&ts)
	md.Tasks[name] = ts
}
