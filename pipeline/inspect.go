package pipeline

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/eddy-stream/eddy/pipeline/lang"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/keygroup"
	"github.com/eddy-stream/eddy/storage/snapshot"
	"github.com/eddy-stream/eddy/storage/state"
	"github.com/eddy-stream/eddy/storage/timers"
)

// Read-only inspection of keyed state in a checkpoint (eddy state
// inspect): the open windows of each key with their decoded accumulators,
// the timers, and the size of each key group. Nothing here writes under
// the checkpoint directory: native checkpoints are opened through a
// scratch copy (state.OpenCheckpointReadOnly), full snapshots are read into
// a scratch RocksDB instance.

// KeySeparator joins the key field values of a key for display, as results
// show them (site-3|dev-0003).
const KeySeparator = "|"

// AccState is the decoded accumulator of one aggregate in one window.
type AccState struct {
	Name string `json:"name"`
	Func string `json:"func"`
	// Set: the accumulator has seen a reading (false: its identity).
	Set bool `json:"set"`
	// Count of readings for count, sum and avg; 0 for the others.
	Count uint64 `json:"count"`
	// Value: the sum (sum, avg), the min, max, first or last value.
	Value float64 `json:"value"`
	// Timestamp: the event time of the first or last value (Unix ms).
	Timestamp int64 `json:"timestamp,omitempty"`
	// Result is what the window would emit now; null for an avg, min,
	// max, first or last of nothing.
	Result *float64 `json:"result"`
	// Partial: the aggregate was added by a migration while the window
	// was open; it has not seen the readings before that restore.
	Partial bool `json:"partial,omitempty"`
}

// WindowState is one open window of a key.
type WindowState struct {
	Start   int64      `json:"start"` // Unix ms, inclusive
	End     int64      `json:"end"`   // Unix ms, exclusive
	Firings uint32     `json:"firings"`
	Accs    []AccState `json:"aggregates"`
}

// KeyState is everything a window stage keeps for one key.
type KeyState struct {
	Stage    string        `json:"stage"`
	Task     string        `json:"task"`
	KeyGroup uint16        `json:"key_group"`
	Key      string        `json:"key"` // fields joined by KeySeparator
	Fields   []string      `json:"fields"`
	Windows  []WindowState `json:"windows"`
	// Timers registered in the timer service for this key (Unix ms),
	// ascending.
	Timers []int64 `json:"timers"`
	// EntryTimers are the timer timestamps the key's own entry records.
	EntryTimers []int64 `json:"entry_timers"`
	Bytes       int     `json:"bytes"` // key and value bytes of the window entry
}

// KeyGroupSize is the state of one key group of one task.
type KeyGroupSize struct {
	Task        string `json:"task"`
	KeyGroup    uint16 `json:"key_group"`
	Keys        int    `json:"keys"`         // window entries
	Timers      int    `json:"timers"`       // timers of the timer service
	Bytes       int64  `json:"bytes"`        // key plus value bytes of both
	WindowBytes int64  `json:"window_bytes"` // of the window entries
	TimerBytes  int64  `json:"timer_bytes"`  // of the RocksDB timers, or the heap encoding
}

// TaskInspection is one keyed subtask of a checkpoint.
type TaskInspection struct {
	Task          string `json:"task"`
	Stage         string `json:"stage"`
	Kind          string `json:"kind"` // native | full
	KeyGroupStart uint16 `json:"key_group_start"`
	KeyGroupEnd   uint16 `json:"key_group_end"`
	Watermark     int64  `json:"watermark"`
	TimerMode     string `json:"timer_mode"` // rocksdb | heap
	StateSize     int64  `json:"state_size"` // bytes of its files in the checkpoint
}

// Inspection is what InspectCheckpointDir found.
type Inspection struct {
	Checkpoint     int64            `json:"checkpoint"`
	Dir            string           `json:"dir"`
	Incremental    bool             `json:"incremental"`
	Parallelism    int              `json:"parallelism"`
	MaxParallelism int              `json:"max_parallelism"`
	Tasks          []TaskInspection `json:"tasks"`
	Keys           []KeyState       `json:"keys"`
	KeyGroups      []KeyGroupSize   `json:"key_groups"`
}

// InspectOptions select what InspectCheckpointDir looks at.
type InspectOptions struct {
	Stages  []StageSpec // the configured stages: the layout of the values of a checkpoint that records no schemas
	Stage   string      // only this stage; "" every keyed stage
	Key     string      // only this key, fields joined by KeySeparator; "" every key
	Scratch string      // parent of the scratch directory (default os.TempDir())
	Logger  *slog.Logger
	// Metadata, when set, is the metadata of dir (a savepoint's, converted
	// with savepoint.Metadata.Checkpoint); nil: dir's checkpoint _metadata.
	Metadata *checkpoint.Metadata
}

// InspectCheckpointDir reads the keyed state of the completed checkpoint
// (or anything with the same layout, such as a checkpoint restored from the
// remote) in dir, read-only: nothing under dir is opened for writing.
// Values are decoded with the aggregate lists (and their old layouts) of
// the checkpoint's recorded schemas; a checkpoint that records none (taken
// before schemas) with those of o.Stages, which must be the ones it was
// written with.
func InspectCheckpointDir(dir string, o InspectOptions) (*Inspection, error) {
	md := o.Metadata
	if md == nil {
		data, err := os.ReadFile(filepath.Join(dir, checkpoint.MetadataFile))
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s has no %s: not a completed checkpoint", dir, checkpoint.MetadataFile)
		}
		if err != nil {
			return nil, err
		}
		if md, err = checkpoint.DecodeMetadata(data); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, checkpoint.MetadataFile), err)
		}
	}
	plans := map[string]*windowOp{} // stage → its decoder
	for i := range md.Schemas {
		sc := &md.Schemas[i]
		p, err := planOfSchema(sc.Aggregates)
		if err != nil {
			return nil, fmt.Errorf("%s: schema of stage %s: %w", dir, sc.Stage, err)
		}
		op := &windowOp{plan: p}
		if err := op.setLayouts(sc); err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		plans[sc.Stage] = op
	}
	if md.Schemas == nil { // taken before schemas: the configuration's lists
		for i := range o.Stages {
			s := &o.Stages[i]
			if !s.Keyed() {
				continue
			}
			p, err := compileAggregates(s.Aggregates)
			if err != nil {
				return nil, fmt.Errorf("stage %s: %w", s.Name, err)
			}
			plans[s.Name] = &windowOp{plan: p}
		}
	}
	if o.Stage != "" && plans[o.Stage] == nil {
		return nil, fmt.Errorf("no keyed stage named %q in the checkpoint (keyed stages: %s)", o.Stage, strings.Join(slices.Sorted(maps.Keys(plans)), ", "))
	}
	scratch, err := os.MkdirTemp(o.Scratch, "eddy-inspect-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	in := &Inspection{Checkpoint: md.ID, Dir: dir, Incremental: md.Incremental,
		Parallelism: md.Parallelism, MaxParallelism: md.MaxParallelism}
	for _, name := range md.TaskNames() {
		ts := md.Tasks[name]
		if ts.Kind == checkpoint.KindNone || (o.Stage != "" && ts.Stage != o.Stage) {
			continue
		}
		plan := plans[ts.Stage]
		if plan == nil {
			return nil, fmt.Errorf("checkpoint %d holds state of stage %q, which neither its schemas nor the configuration describe: its values cannot be decoded", md.ID, ts.Stage)
		}
		if err := in.inspectTask(filepath.Join(dir, name), filepath.Join(scratch, name), name, ts, plan, o); err != nil {
			return nil, fmt.Errorf("task %s: %w", name, err)
		}
	}
	return in, nil
}

func (in *Inspection) inspectTask(taskDir, scratch, name string, ts checkpoint.TaskState, plan *windowOp, o InspectOptions) error {
	raw, err := checkpoint.ReadTaskState(filepath.Join(taskDir, checkpoint.TaskStateFile))
	if err != nil {
		return err
	}
	var snap taskSnapshot
	if err := json.Unmarshal(raw, &snap); err != nil {
		return fmt.Errorf("decode task state: %w", err)
	}
	kgs := keygroup.Range{Start: uint16(ts.KeyGroupStart), End: uint16(ts.KeyGroupEnd)}
	var db *state.DB
	switch ts.Kind {
	case checkpoint.KindNative:
		db, err = state.OpenCheckpointReadOnly(taskDir, scratch, o.Logger)
	case checkpoint.KindFull:
		db, err = state.Open(state.Options{Dir: scratch, ColumnFamilies: []string{cfWindows, cfTimers}, Logger: o.Logger})
		if err == nil {
			if _, err = snapshot.Restore(filepath.Join(taskDir, fullSnapshotFile), db, kgs); err != nil {
				db.Close()
			}
		}
	default:
		return fmt.Errorf("unknown kind %q", ts.Kind)
	}
	if err != nil {
		return err
	}
	defer db.Close()
	ti := TaskInspection{Task: name, Stage: ts.Stage, Kind: ts.Kind, KeyGroupStart: kgs.Start, KeyGroupEnd: kgs.End,
		Watermark: snap.Watermark, TimerMode: "rocksdb", StateSize: sumSizes(ts.Files)}
	// Timers: RocksDB column family, or the heap snapshot in _task.
	type tkey struct {
		kg  uint16
		key string
	}
	tmap := map[tkey][]int64{}
	sizes := map[uint16]*KeyGroupSize{}
	size := func(kg uint16) *KeyGroupSize {
		s := sizes[kg]
		if s == nil {
			s = &KeyGroupSize{Task: name, KeyGroup: kg}
			sizes[kg] = s
		}
		return s
	}
	if len(snap.HeapTimers) > 0 {
		ti.TimerMode = "heap"
		all, err := timers.DecodeSnapshot(snap.HeapTimers)
		if err != nil {
			return err
		}
		for _, t := range all {
			k := tkey{t.KeyGroup, string(t.Key)}
			tmap[k] = append(tmap[k], t.Timestamp)
			s := size(t.KeyGroup)
			s.Timers++
			n := int64(2 + 8 + uvarintLen(uint64(len(t.Key))) + len(t.Key) + len(t.Namespace)) // its RocksDB key
			s.TimerBytes += n
			s.Bytes += n
		}
	} else if cf := db.CF(cfTimers); cf != nil {
		lo, hi := state.KeyGroupRangeBounds(kgs)
		it := db.NewIterator(cf, lo, hi)
		for ; it.Valid(); it.Next() {
			t, err := timers.DecodeKey(it.Key())
			if err != nil {
				it.Close()
				return err
			}
			k := tkey{t.KeyGroup, string(t.Key)}
			tmap[k] = append(tmap[k], t.Timestamp)
			s := size(t.KeyGroup)
			s.Timers++
			n := int64(len(it.Key()) + len(it.Value()))
			s.TimerBytes += n
			s.Bytes += n
		}
		err := it.Err()
		it.Close()
		if err != nil {
			return err
		}
	}
	if len(snap.HeapTimers) == 0 && ti.Kind == checkpoint.KindNative && db.CF(cfTimers) == nil {
		ti.TimerMode = "none"
	}
	cf := db.CF(cfWindows)
	if cf == nil {
		return fmt.Errorf("no %q column family", cfWindows)
	}
	lo, hi := state.KeyGroupRangeBounds(kgs)
	it := db.NewIterator(cf, lo, hi)
	defer it.Close()
	for ; it.Valid(); it.Next() {
		kg, key, _, err := state.ParseKey(it.Key())
		if err != nil {
			return err
		}
		ks, err := decodeWindowEntry(plan, string(key), it.Value())
		if err != nil {
			return fmt.Errorf("key group %d, key %x: %w", kg, key, err)
		}
		n := len(it.Key()) + len(it.Value())
		s := size(kg)
		s.Keys++
		s.WindowBytes += int64(n)
		s.Bytes += int64(n)
		if o.Key != "" && ks.Key != o.Key {
			continue
		}
		ks.Stage, ks.Task, ks.KeyGroup, ks.Bytes = ts.Stage, name, kg, n
		ks.Timers = tmap[tkey{kg, string(key)}]
		slices.Sort(ks.Timers)
		in.Keys = append(in.Keys, *ks)
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, kg := range slices.Sorted(maps.Keys(sizes)) {
		in.KeyGroups = append(in.KeyGroups, *sizes[kg])
	}
	in.Tasks = append(in.Tasks, ti)
	return nil
}

func sumSizes(fs []checkpoint.File) int64 {
	var n int64
	for _, f := range fs {
		n += f.Size
	}
	return n
}

// DecodeWindowEntry decodes the windows column family value of one key of
// stage s (windowOp.encodeEntry; key: the encoded key fields, as in the
// state key) with the stage's aggregate list. It only reads.
func DecodeWindowEntry(s *StageSpec, key string, value []byte) (*KeyState, error) {
	p, err := compileAggregates(s.Aggregates)
	if err != nil {
		return nil, err
	}
	return decodeWindowEntry(&windowOp{plan: p}, key, value)
}

// decodeWindowEntry decodes value with op's aggregate list and layouts.
func decodeWindowEntry(op *windowOp, key string, value []byte) (*KeyState, error) {
	fields, err := decodeKeyAny(key)
	if err != nil {
		return nil, err
	}
	p := op.plan
	var e keyEntry
	if err := op.decodeEntry(&e, value); err != nil {
		return nil, err
	}
	ks := &KeyState{Key: strings.Join(fields, KeySeparator), Fields: fields, EntryTimers: e.timers,
		Windows: make([]WindowState, 0, len(e.wins))}
	for _, w := range e.wins {
		ws := WindowState{Start: w.start, End: w.end, Firings: w.firings}
		for i, a := range p.aggs {
			ac := &w.accs[i]
			st := AccState{Name: a.name, Func: a.fn.String(), Set: ac.set, Count: ac.n, Value: ac.v, Partial: ac.partial}
			if a.fn == lang.First || a.fn == lang.Last {
				st.Timestamp = ac.ts
			}
			if r := ac.result(a.fn); !math.IsNaN(r) {
				st.Result = &r
			}
			ws.Accs = append(ws.Accs, st)
		}
		ks.Windows = append(ks.Windows, ws)
	}
	return ks, nil
}

// decodeKeyAny splits an encoded key into its fields, however many.
func decodeKeyAny(k string) ([]string, error) {
	n := 0
	b := []byte(k)
	for len(b) > 0 {
		l, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < l {
			return nil, errors.New("pipeline: malformed key")
		}
		b = b[w+int(l):]
		n++
	}
	return decodeKey(k, n)
}

func uvarintLen(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}
