package config

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/file"

	"github.com/eddy-stream/eddy/pipeline/lang"
)

// Problem is one thing wrong with a configuration, at one key.
type Problem struct {
	Key string // YAML key path, e.g. pipeline.stages[2].window.size; "" for the file as a whole
	Msg string
}

func (p Problem) String() string {
	if p.Key == "" {
		return p.Msg
	}
	return p.Key + ": " + p.Msg
}

// ValidationError lists every problem found, in schema order.
type ValidationError struct {
	Problems []Problem
}

// Error lists one problem per line: "key: message".
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Name rules.
var (
	applianceRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	nameRe       = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	outputNameRe = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	fieldRe      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)
	cfNameRe     = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	bucketRe     = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
)

type checker struct {
	probs []Problem
}

func (ck *checker) add(key, format string, args ...any) {
	ck.probs = append(ck.probs, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (ck *checker) oneOf(key, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	ck.add(key, "must be one of %s (got %q)", strings.Join(allowed, ", "), v)
}

func (ck *checker) intRange(key string, v, lo, hi int) {
	if v < lo || v > hi {
		ck.add(key, "must be between %d and %d (got %d)", lo, hi, v)
	}
}

func (ck *checker) intMin(key string, v, lo int) {
	if v < lo {
		ck.add(key, "must be >= %d (got %d)", lo, v)
	}
}

func (ck *checker) durPositive(key string, d time.Duration) {
	if d <= 0 {
		ck.add(key, "must be > 0 (got %s)", d)
	}
}

func (ck *checker) durNonNeg(key string, d time.Duration) {
	if d < 0 {
		ck.add(key, "must be >= 0 (got %s)", d)
	}
}

func (ck *checker) sizeMin(key string, s, lo Size) {
	if s < lo {
		ck.add(key, "must be >= %s (got %s)", lo, s)
	}
}

func (ck *checker) qos(key string, q *int) {
	if q != nil {
		ck.intRange(key, *q, 0, 2)
	}
}

// Validate checks the whole configuration and returns a *ValidationError
// listing every problem, or nil. It does not touch the file system or the
// network.
func (c *Config) Validate() error {
	ck := &checker{}
	if c.ApplianceID == "" {
		ck.add("appliance_id", "required: a name unique to this appliance, e.g. line-3")
	} else if !applianceRe.MatchString(c.ApplianceID) {
		ck.add("appliance_id", "must match [a-z0-9][a-z0-9._-]{0,62} (got %q)", c.ApplianceID)
	}
	if strings.TrimSpace(c.DataDir) == "" {
		ck.add("data_dir", "required")
	}
	c.validateMQTT(ck)
	c.validateSources(ck)
	c.validatePipeline(ck)
	c.validateSinks(ck)
	c.validateIngestLog(ck)
	if _, _, err := c.Disk.MinFreeBudget(); err != nil {
		ck.add("disk.min_free", "%v", err)
	}
	if _, _, err := c.Disk.ReserveSize(); err != nil {
		ck.add("disk.reserve", "%v", err)
	}
	c.validateState(ck)
	c.validateCheckpointing(ck)
	c.validateUpload(ck)
	c.validateHTTP(ck)
	ck.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	ck.oneOf("log.format", c.Log.Format, "json", "text")
	if len(ck.probs) == 0 {
		return nil
	}
	return &ValidationError{Problems: ck.probs}
}

var brokerSchemes = []string{"tcp", "ssl", "tls", "ws", "wss"}

func (c *Config) validateMQTT(ck *checker) {
	validateConnection(ck, "mqtt", &c.MQTT, true)
}

// validateConnection checks a broker connection under key k (mqtt, or a
// sink's mqtt.connection, which cannot be the embedded broker).
func validateConnection(ck *checker, k string, m *MQTT, embeddedOK bool) {
	scheme := ""
	if m.Broker != BrokerEmbedded || !embeddedOK {
		u, err := url.Parse(m.Broker)
		ok := err == nil && u.Host != "" && slices.Contains(brokerSchemes, u.Scheme)
		if ok && (u.Scheme == "tcp" || u.Scheme == "ssl" || u.Scheme == "tls") && u.Port() == "" {
			port := 8883
			if u.Scheme == "tcp" {
				port = 1883
			}
			ck.add(k+".broker", "needs a port, e.g. %s://%s:%d (got %q)", u.Scheme, u.Hostname(), port, m.Broker)
		} else if !ok && embeddedOK {
			ck.add(k+".broker", `must be a tcp://, ssl://, tls://, ws:// or wss:// URL, or "embedded" (got %q)`, m.Broker)
		} else if !ok {
			ck.add(k+".broker", `must be a tcp://, ssl://, tls://, ws:// or wss:// URL (got %q)`, m.Broker)
		} else {
			scheme = u.Scheme
		}
	}
	if embeddedOK {
		if err := checkHostPort(m.Embedded.Listen); err != nil {
			ck.add(k+".embedded.listen", "%v", err)
		}
	}
	if m.Password != "" && m.PasswordFile != "" {
		ck.add(k+".password_file", "set %s.password or %s.password_file, not both", k, k)
	}
	ck.intRange(k+".qos", m.QoS, 0, 2)
	ck.durNonNeg(k+".keep_alive", m.KeepAlive)
	if m.KeepAlive > 0 && m.KeepAlive%time.Second != 0 {
		ck.add(k+".keep_alive", "must be whole seconds, 0 = off (got %s)", m.KeepAlive)
	}
	ck.durPositive(k+".connect_timeout", m.ConnectTimeout)
	ck.durPositive(k+".reconnect_max_interval", m.ReconnectMaxInterval)
	if m.TLS.CertFile != "" && m.TLS.KeyFile == "" {
		ck.add(k+".tls.key_file", "required when %s.tls.cert_file is set", k)
	}
	if m.TLS.KeyFile != "" && m.TLS.CertFile == "" {
		ck.add(k+".tls.cert_file", "required when %s.tls.key_file is set", k)
	}
	if m.TLS.isSet() {
		switch {
		case m.Broker == BrokerEmbedded:
			ck.add(k+".tls", "has no effect with the embedded broker; remove it")
		case scheme == "tcp" || scheme == "ws":
			ck.add(k+".tls", "has no effect with a %s:// broker; use ssl://, tls:// or wss:// (got %q)", scheme, m.Broker)
		}
	}
}

func (c *Config) validateSources(ck *checker) {
	if len(c.Sources) == 0 {
		ck.add("sources", "at least one source is required")
	}
	seen := map[string]int{}
	for i := range c.Sources {
		s := &c.Sources[i]
		k := fmt.Sprintf("sources[%d]", i)
		checkName(ck, k+".name", s.Name, seen, "sources", i)
		levels, err := topicFilterLevels(s.Topic)
		if err != nil {
			ck.add(k+".topic", "%v", err)
		}
		if len(s.TopicFields) > 0 {
			if err == nil && len(s.TopicFields) != len(levels) {
				ck.add(k+".topic_fields", "has %d entries but topic %q has %d levels; give one per level, null to ignore a level", len(s.TopicFields), s.Topic, len(levels))
			}
			names := map[string]bool{}
			for j, f := range s.TopicFields {
				fk := fmt.Sprintf("%s.topic_fields[%d]", k, j)
				switch {
				case f == "":
				case !fieldRe.MatchString(f):
					ck.add(fk, "must be a field name matching %s, or null (got %q)", fieldRe, f)
				case names[f]:
					ck.add(fk, "duplicate field %q", f)
				case err == nil && j < len(levels) && levels[j] == "#":
					ck.add(fk, "must be null: the # level spans several levels")
				}
				names[f] = true
			}
		}
		ck.qos(k+".qos", s.QoS)
		ck.intRange(k+".parallelism", s.Parallelism, 0, 64)
		ck.oneOf(k+".format", s.Format, "json")
		ck.oneOf(k+".event_time.format", s.EventTime.Format, "auto", "rfc3339", "epoch_ms", "epoch_s")
		if s.EventTime.Field != "" && strings.TrimSpace(s.EventTime.Field) != s.EventTime.Field {
			ck.add(k+".event_time.field", "has leading or trailing spaces (got %q)", s.EventTime.Field)
		}
		ck.durNonNeg(k+".event_time.max_out_of_orderness", s.EventTime.MaxOutOfOrderness)
		ck.durNonNeg(k+".event_time.idle_timeout", s.EventTime.IdleTimeout)
		ck.durNonNeg(k+".event_time.max_future", s.EventTime.MaxFuture)
	}
}

// checkName checks a source, stage or sink name and that it is unique in
// seen (name → index).
func checkName(ck *checker, key, name string, seen map[string]int, list string, i int) {
	switch {
	case name == "":
		ck.add(key, "required")
		return
	case !nameRe.MatchString(name):
		ck.add(key, "must match [a-z][a-z0-9_]* (got %q)", name)
	}
	if j, dup := seen[name]; dup {
		ck.add(key, "duplicate name %q (also %s[%d])", name, list, j)
		return
	}
	seen[name] = i
}

// topicFilterLevels checks an MQTT topic filter (+ is a whole level, # a
// whole and last level) and returns its levels.
func topicFilterLevels(t string) ([]string, error) {
	if t == "" {
		return nil, errors.New("required: an MQTT topic filter such as sensors/+/+/telemetry")
	}
	if len(t) > 65535 || strings.ContainsRune(t, 0) {
		return nil, fmt.Errorf("is not a valid MQTT topic filter (got %q)", t)
	}
	levels := strings.Split(t, "/")
	for i, l := range levels {
		if strings.Contains(l, "+") && l != "+" {
			return nil, fmt.Errorf("+ must be a whole level, as in a/+/b (got %q)", t)
		}
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return nil, fmt.Errorf("# must be the whole last level, as in a/b/# (got %q)", t)
		}
	}
	return levels, nil
}

func (c *Config) validatePipeline(ck *checker) {
	p := &c.Pipeline
	ck.intRange("pipeline.max_parallelism", p.MaxParallelism, 1, 32768)
	switch {
	case p.Parallelism < 0:
		ck.add("pipeline.parallelism", "must be >= 0, 0 = number of CPUs (got %d)", p.Parallelism)
	case p.MaxParallelism >= 1 && p.Parallelism > p.MaxParallelism:
		ck.add("pipeline.parallelism", "must be <= pipeline.max_parallelism (%d) (got %d)", p.MaxParallelism, p.Parallelism)
	}
	if len(p.Stages) == 0 {
		ck.add("pipeline.stages", "at least one stage is required")
	}
	sources := map[string]bool{}
	var sourceNames []string
	for _, s := range c.Sources {
		sources[s.Name] = true
		sourceNames = append(sourceNames, s.Name)
	}
	seen := map[string]int{}
	all := map[string]int{}
	for i, s := range p.Stages {
		if s.Name != "" {
			if _, dup := all[s.Name]; !dup {
				all[s.Name] = i
			}
		}
	}
	var earlier []string
	uids := map[string]int{}
	for i := range p.Stages {
		s := &p.Stages[i]
		k := fmt.Sprintf("pipeline.stages[%d]", i)
		checkName(ck, k+".name", s.Name, seen, "pipeline.stages", i)
		if sources[s.Name] {
			ck.add(k+".name", "%q is already a source name; stage and source names share one namespace", s.Name)
		}
		if s.From != "" && !sources[s.From] && !slices.Contains(earlier, s.From) {
			if j, ok := all[s.From]; ok && j >= i {
				ck.add(k+".from", "stage %q is not earlier than this one; a stage reads only sources and earlier stages", s.From)
			} else {
				ck.add(k+".from", "%q is not a source or an earlier stage (sources: %s; earlier stages: %s)", s.From, list(sourceNames), list(earlier))
			}
		}
		validateStage(ck, k, s)
		validateUID(ck, k, s, uids, i)
		if s.Name != "" {
			earlier = append(earlier, s.Name)
		}
	}
}

// validateUID checks a stage's uid: only keyed stages have state to name,
// and no two keyed stages share a uid (a uid, or the name of one without).
func validateUID(ck *checker, k string, s *Stage, uids map[string]int, i int) {
	keyed := len(s.KeyBy) > 0
	if s.UID != "" {
		if !keyed {
			ck.add(k+".uid", "only a keyed window stage (key_by) has state and a uid")
			return
		}
		if !nameRe.MatchString(s.UID) {
			ck.add(k+".uid", "must match [a-z][a-z0-9_]* (got %q)", s.UID)
		}
	}
	uid := cmp.Or(s.UID, s.Name)
	if !keyed || uid == "" {
		return
	}
	if j, dup := uids[uid]; dup {
		ck.add(k+".uid", "uid %q is also the uid of pipeline.stages[%d] (a stage without uid: has its name as uid)", uid, j)
		return
	}
	uids[uid] = i
}

func validateStage(ck *checker, k string, s *Stage) {
	var kinds []string
	if s.Filter != "" {
		kinds = append(kinds, "filter")
	}
	if len(s.Map) > 0 {
		kinds = append(kinds, "map")
	}
	keyed := len(s.KeyBy) > 0 || s.Window != nil || len(s.Aggregate) > 0
	if keyed {
		kinds = append(kinds, "keyed window (key_by + window + aggregate)")
	}
	switch len(kinds) {
	case 0:
		ck.add(k, "needs one of filter, map, or key_by + window + aggregate")
		return
	case 1:
	default:
		ck.add(k, "has %s; a stage is exactly one of filter, map, or key_by + window + aggregate: split it into several stages", strings.Join(kinds, " and "))
	}
	if s.Filter != "" {
		if _, err := lang.CompileFilter(s.Filter); err != nil {
			ck.add(k+".filter", "%s", exprError(err))
		}
	}
	for _, f := range sortedKeys(s.Map) {
		fk := k + ".map." + f
		if !outputNameRe.MatchString(f) {
			ck.add(fk, "output field name must match [a-z_][a-z0-9_]*")
		}
		e := s.Map[f]
		if strings.TrimSpace(e) == "" {
			ck.add(fk, "expression is empty")
			continue
		}
		if _, err := lang.CompileMap(e); err != nil {
			ck.add(fk, "%s", exprError(err))
		}
	}
	if keyed {
		validateKeyed(ck, k, s)
	}
}

func validateKeyed(ck *checker, k string, s *Stage) {
	if len(s.KeyBy) == 0 {
		ck.add(k+".key_by", "required for a keyed window stage: a field name or a list of them")
	}
	keys := map[string]bool{}
	for j, f := range s.KeyBy {
		fk := fmt.Sprintf("%s.key_by[%d]", k, j)
		switch {
		case !fieldRe.MatchString(f):
			ck.add(fk, "must be a field name matching %s (got %q)", fieldRe, f)
		case slices.Contains(lang.ResultFields, f):
			ck.add(fk, "%q is a field every window result has; key by another name (reserved: %s)", f, list(lang.ResultFields))
		case keys[f]:
			ck.add(fk, "duplicate field %q", f)
		}
		keys[f] = true
	}
	if s.Window == nil {
		ck.add(k+".window", "required for a keyed window stage, e.g. {type: tumbling, size: 1m}")
	} else {
		validateWindow(ck, k+".window", s.Window)
	}
	if len(s.Aggregate) == 0 {
		ck.add(k+".aggregate", `required for a keyed window stage, e.g. {count: "count()", avg_temp: "avg(temperature)"}`)
	}
	for _, name := range sortedKeys(s.Aggregate) {
		ak := k + ".aggregate." + name
		switch {
		case !outputNameRe.MatchString(name):
			ck.add(ak, "aggregate name must match [a-z_][a-z0-9_]*")
		case keys[name]:
			ck.add(ak, "aggregate name %q clashes with a key_by field", name)
		case slices.Contains(lang.ResultFields, name):
			ck.add(ak, "aggregate name %q is reserved (reserved: %s)", name, list(lang.ResultFields))
		}
		if _, _, err := lang.ParseAggregate(s.Aggregate[name]); err != nil {
			ck.add(ak, "%v", err)
		}
	}
}

func validateWindow(ck *checker, k string, w *Window) {
	notFor := func(key string, d time.Duration) {
		if d != 0 {
			ck.add(k+"."+key, "only applies to %s windows; remove it for a %s window (got %s)", map[string]string{"size": "tumbling and sliding", "slide": "sliding", "gap": "session"}[key], w.Type, d)
		}
	}
	ms := func(key string, d time.Duration) {
		if d%time.Millisecond != 0 {
			ck.add(k+"."+key, "must be a whole number of milliseconds (got %s)", d)
		}
	}
	switch w.Type {
	case WindowTumbling:
		ck.durPositive(k+".size", w.Size)
		ms("size", w.Size)
		notFor("slide", w.Slide)
		notFor("gap", w.Gap)
	case WindowSliding:
		ck.durPositive(k+".size", w.Size)
		ck.durPositive(k+".slide", w.Slide)
		ms("size", w.Size)
		ms("slide", w.Slide)
		switch {
		case w.Slide <= 0 || w.Size <= 0:
		case w.Slide >= w.Size:
			ck.add(k+".slide", "must be < window.size (%s) (got %s); a slide equal to the size is a tumbling window", w.Size, w.Slide)
		case w.Size%w.Slide != 0:
			ck.add(k+".slide", "must divide window.size (%s) evenly (got %s)", w.Size, w.Slide)
		}
		notFor("gap", w.Gap)
	case WindowSession:
		ck.durPositive(k+".gap", w.Gap)
		ms("gap", w.Gap)
		notFor("size", w.Size)
		notFor("slide", w.Slide)
	default:
		ck.oneOf(k+".type", w.Type, WindowTumbling, WindowSliding, WindowSession)
	}
	ck.durNonNeg(k+".allowed_lateness", w.AllowedLateness)
}

// exprError renders an expr-lang compile error on one line.
func exprError(err error) string {
	var fe *file.Error
	if errors.As(err, &fe) {
		return fmt.Sprintf("invalid expression: %s (at column %d)", fe.Message, fe.Column+1)
	}
	return "invalid expression: " + strings.ReplaceAll(err.Error(), "\n", " ")
}

func (c *Config) validateSinks(ck *checker) {
	stages := map[string]*Stage{}
	var stageNames []string
	for i := range c.Pipeline.Stages {
		s := &c.Pipeline.Stages[i]
		if s.Name != "" && stages[s.Name] == nil {
			stages[s.Name] = s
			stageNames = append(stageNames, s.Name)
		}
	}
	seen := map[string]int{}
	paths := map[string]int{}
	deadLetters, outputs := -1, 0
	for i := range c.Sinks {
		s := &c.Sinks[i]
		k := fmt.Sprintf("sinks[%d]", i)
		checkName(ck, k+".name", s.Name, seen, "sinks", i)
		var from *Stage
		if s.DeadLetters {
			if deadLetters >= 0 {
				ck.add(k+".dead_letters", "only one dead-letter sink is allowed (also sinks[%d])", deadLetters)
			} else {
				deadLetters = i
			}
			if s.From != "" {
				ck.add(k+".from", "must be empty for the dead-letter sink: it receives what every stage rejects")
			}
		} else {
			outputs++
			switch {
			case s.From == "":
				ck.add(k+".from", "required: the stage this sink writes (stages: %s)", list(stageNames))
			case stages[s.From] == nil && c.isSource(s.From):
				ck.add(k+".from", "%q is a source; a sink reads a stage (stages: %s)", s.From, list(stageNames))
			case stages[s.From] == nil:
				ck.add(k+".from", "stage %q does not exist (stages: %s)", s.From, list(stageNames))
			default:
				from = stages[s.From]
			}
		}
		switch {
		case s.MQTT == nil && s.File == nil:
			ck.add(k, "needs one of mqtt: {topic: ...} or file: {path: ...}")
		case s.MQTT != nil && s.File != nil:
			ck.add(k, "has both mqtt and file; a sink writes to exactly one: split it into two sinks")
		}
		if s.MQTT != nil {
			validateSinkTopic(ck, k+".mqtt.topic", s, from)
			ck.qos(k+".mqtt.qos", s.MQTT.QoS)
			if s.MQTT.Connection != nil {
				validateConnection(ck, k+".mqtt.connection", s.MQTT.Connection, false)
			}
		}
		if f := s.File; f != nil {
			if strings.TrimSpace(f.Path) == "" {
				ck.add(k+".file.path", "required: a file path (relative paths are under data_dir)")
			} else {
				p := c.Path(f.Path)
				if j, dup := paths[p]; dup {
					ck.add(k+".file.path", "sinks[%d] writes the same file %s", j, p)
				} else {
					paths[p] = i
				}
			}
			ck.sizeMin(k+".file.max_size", f.MaxSize, 0)
			ck.intMin(k+".file.max_files", f.MaxFiles, 1)
		}
		if m := s.Spool.MaxSize; m != 0 && (m < MinSpoolMaxSize || m > MaxSpoolMaxSize) {
			ck.add(k+".spool.max_size", "must be between %s and %s (got %s)", MinSpoolMaxSize, MaxSpoolMaxSize, m)
		}
	}
	if outputs == 0 {
		ck.add("sinks", "at least one sink that is not the dead-letter sink is required")
	}
}

func (c *Config) isSource(name string) bool {
	for _, s := range c.Sources {
		if s.Name == name {
			return true
		}
	}
	return false
}

// validateSinkTopic checks an MQTT sink's topic template against the stage
// it reads.
func validateSinkTopic(ck *checker, k string, s *Sink, from *Stage) {
	t := s.MQTT.Topic
	if t == "" {
		ck.add(k, `required: a topic such as "results/{site}/{device}"`)
		return
	}
	if strings.ContainsAny(t, "+#") {
		ck.add(k, "must not contain the wildcards + or # (got %q)", t)
	}
	tmpl, err := lang.ParseTemplate(t)
	if err != nil {
		ck.add(k, "%v (got %q)", err, t)
		return
	}
	fields := tmpl.Fields()
	if len(fields) == 0 {
		return
	}
	switch {
	case s.DeadLetters:
		ck.add(k, "the dead-letter topic takes no placeholders (got %q)", t)
		return
	case from == nil:
		return // from is already reported
	case from.Kind() != KindWindow:
		ck.add(k, "placeholders need a keyed window stage in from; stage %q is a %s stage (got %q)", from.Name, from.Kind(), t)
		return
	}
	allowed := append([]string(nil), from.KeyBy...)
	allowed = append(allowed, sortedKeys(from.Aggregate)...)
	allowed = append(allowed, lang.TemplateFields...)
	for _, f := range fields {
		if !slices.Contains(allowed, f) {
			ck.add(k, "placeholder {%s} is not a key field, aggregate, window_start, window_end or stage of stage %q (key fields: %s; aggregates: %s)",
				f, from.Name, list(from.KeyBy), list(sortedKeys(from.Aggregate)))
		}
	}
}

func (c *Config) validateIngestLog(ck *checker) {
	l := &c.IngestLog
	ck.sizeMin("ingest_log.segment_size", l.SegmentSize, 64*KiB)
	// Retention frees whole segments, so the log must hold at least two.
	if l.SegmentSize >= 64*KiB && l.MaxSize < 2*l.SegmentSize {
		ck.add("ingest_log.max_size", "must be >= 2 × ingest_log.segment_size (%s) so that retention can free a whole segment (got %s)", 2*l.SegmentSize, l.MaxSize)
	}
	ck.durNonNeg("ingest_log.sync_interval", l.SyncInterval)
}

var compressions = []string{"none", "snappy", "lz4", "zstd"}

func (c *Config) validateState(ck *checker) {
	s := &c.State
	ck.sizeMin("state.memory.managed", s.Memory.Managed, 16*MiB)
	ratio := func(key string, r float64) {
		if !(r > 0 && r < 1) {
			ck.add(key, "must be between 0 and 1, exclusive (got %v)", r)
		}
	}
	ratio("state.memory.write_buffer_ratio", s.Memory.WriteBufferRatio)
	ratio("state.memory.high_prio_pool_ratio", s.Memory.HighPrioPoolRatio)
	ratio("state.memory.write_cache_ratio", s.Memory.WriteCacheRatio)
	wb, wc := s.Memory.WriteBufferRatio, s.Memory.WriteCacheRatio
	if r := wb + wc; wb > 0 && wb < 1 && wc > 0 && wc < 1 && r >= 1 {
		ck.add("state.memory.write_cache_ratio", "plus write_buffer_ratio must be below 1, the rest is the block cache (got %v)", r)
	}
	ck.oneOf("state.timers", s.Timers, "rocksdb", "heap")
	ck.intMin("state.write_cache_entries", s.WriteCacheEntries, 1)
	ck.intMin("state.max_background_jobs", s.MaxBackgroundJobs, 1)
	for _, name := range sortedKeys(s.ColumnFamilies) {
		cf := s.ColumnFamilies[name]
		k := "state.column_families." + name
		if !cfNameRe.MatchString(name) {
			ck.add(k, "state name must match [a-z0-9][a-z0-9_-]*")
		}
		ck.sizeMin(k+".write_buffer_size", cf.WriteBufferSize, 0)
		ck.intMin(k+".max_write_buffer_number", cf.MaxWriteBufferNumber, 0)
		ck.sizeMin(k+".arena_block_size", cf.ArenaBlockSize, 0)
		if cf.Compression != "" {
			ck.oneOf(k+".compression", cf.Compression, compressions...)
		}
	}
}

func (c *Config) validateCheckpointing(ck *checker) {
	p := &c.Checkpointing
	// Flink refuses intervals and timeouts under 10 ms.
	if p.Interval != 0 && p.Interval < 10*time.Millisecond {
		ck.add("checkpointing.interval", "must be 0 (off) or >= 10ms (got %s)", p.Interval)
	}
	ck.oneOf("checkpointing.mode", p.Mode, ExactlyOnce, AtLeastOnce)
	if p.Timeout < 10*time.Millisecond {
		ck.add("checkpointing.timeout", "must be >= 10ms (got %s)", p.Timeout)
	}
	ck.durNonNeg("checkpointing.min_pause", p.MinPause)
	ck.intMin("checkpointing.max_concurrent", p.MaxConcurrent, 1)
	ck.intMin("checkpointing.tolerable_failures", p.TolerableFailures, 0)
	ck.intMin("checkpointing.num_retained", p.NumRetained, 1)
	ck.oneOf("checkpointing.compression", p.Compression, "none", "snappy")
	ck.intMin("checkpointing.history", p.History, 1)
	if p.Unaligned && p.Mode == AtLeastOnce {
		ck.add("checkpointing.unaligned", "must be false with checkpointing.mode: at_least_once (unaligned checkpoints are exactly_once only, as in Flink)")
	}
	ck.durNonNeg("checkpointing.aligned_timeout", p.AlignedTimeout)
	if p.AlignedTimeout > 0 && !p.Unaligned {
		ck.add("checkpointing.aligned_timeout", "must be 0 unless checkpointing.unaligned is true (got %s)", p.AlignedTimeout)
	}
}

func (c *Config) validateUpload(ck *checker) {
	u := &c.Upload
	if u.Remote != "" {
		validateRemote(ck, u.Remote)
	}
	if u.Endpoint != "" {
		ep := u.Endpoint
		if strings.Contains(ep, "://") {
			pu, err := url.Parse(ep)
			if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" || (pu.Path != "" && pu.Path != "/") {
				ck.add("upload.endpoint", "must be host[:port] or http(s)://host[:port] (got %q)", ep)
			}
		} else if strings.ContainsAny(ep, "/ ") {
			ck.add("upload.endpoint", "must be host[:port] or http(s)://host[:port] (got %q)", ep)
		}
	}
	if (u.AccessKeyID == "") != (u.SecretAccessKey == "") {
		if u.AccessKeyID == "" {
			ck.add("upload.access_key_id", "required when upload.secret_access_key is set")
		} else {
			ck.add("upload.secret_access_key", "required when upload.access_key_id is set")
		}
	}
	if u.CredentialsFile != "" && (u.AccessKeyID != "" || u.SecretAccessKey != "") {
		ck.add("upload.credentials_file", "set upload.credentials_file or upload.access_key_id + secret_access_key, not both")
	}
	ck.intMin("upload.num_retained", u.NumRetained, 1)
	ck.intRange("upload.parallelism", u.Parallelism, 1, 256)
	ck.sizeMin("upload.bandwidth", u.Bandwidth, 0)
	ck.oneOf("upload.compression", u.Compression, "none", "snappy")
	ck.durPositive("upload.retry_max_interval", u.RetryMaxInterval)
	ck.durPositive("upload.orphan_grace", u.OrphanGrace)
	ck.oneOf("upload.restore", u.Restore, "wait", "empty_if_unreachable")
	ck.durPositive("upload.restore_timeout", u.RestoreTimeout)
}

func validateRemote(ck *checker, r string) {
	bad := func() {
		ck.add("upload.remote", `must be "" (off), s3://bucket/prefix or file:///absolute/path (got %q)`, r)
	}
	u, err := url.Parse(r)
	if err != nil {
		bad()
		return
	}
	switch u.Scheme {
	case "s3":
		if !bucketRe.MatchString(u.Host) || strings.Contains(u.Host, "..") {
			ck.add("upload.remote", "bucket name must be 3-63 characters of a-z, 0-9, . and - (got %q)", u.Host)
		}
		if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			bad()
		}
	case "file":
		if u.Host != "" || !filepath.IsAbs(u.Path) {
			ck.add("upload.remote", "a file:// remote needs an absolute path, as in file:///mnt/backup/eddy (got %q)", r)
		}
	default:
		bad()
	}
}

func (c *Config) validateHTTP(ck *checker) {
	h := &c.HTTP
	if h.Token != "" && h.TokenFile != "" {
		ck.add("http.token_file", "set http.token or http.token_file, not both")
	}
	if err := checkHostPort(h.Listen); err != nil {
		ck.add("http.listen", "%v", err)
		return
	}
	host, _, _ := net.SplitHostPort(h.Listen)
	if !isLoopback(host) && h.Token == "" && h.TokenFile == "" && !h.AllowInsecureRemote {
		ck.add("http.listen", "%q is reachable from other hosts: set http.token or http.token_file, or http.allow_insecure_remote: true", h.Listen)
	}
}

// checkHostPort checks a listen address of the form host:port.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("must be host:port, e.g. 127.0.0.1:8086 (got %q)", s)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("invalid host in %q", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port must be a number from 0 to 65535 (got %q)", s)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// list renders names for a message; "none" when empty.
func list(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
