package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// EnvPrefix is the prefix of every environment override.
const EnvPrefix = "EDDY"

var envKeyReplacer = strings.NewReplacer(".", "_")

// Load reads the YAML file at path over Default (path "" = defaults only),
// applies EDDY_* environment overrides, validates, and fills in derived
// values (Derive). Every problem with the file, the environment or the
// result is reported at once as a *ValidationError, in schema order; a file
// that cannot be read or parsed is a plain error.
func Load(path string) (*Config, error) {
	c := Default()
	var probs []Problem

	if path != "" {
		fv := viper.New()
		fv.SetConfigFile(path)
		fv.SetConfigType("yaml")
		if err := fv.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config: read %s: %w", path, err)
		}
		probs = append(probs, decodeFile(fv, c)...)
	}
	probs = append(probs, applyEnv(c)...)

	// Validate before Derive, so that a bad mqtt.qos is reported once and
	// not again at every source and sink that inherits it.
	if err := c.Validate(); err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) {
			return nil, err
		}
		for _, p := range ve.Problems {
			if !coveredBy(p.Key, probs) {
				probs = append(probs, p)
			}
		}
	}
	if len(probs) > 0 {
		sortProblems(probs)
		return nil, &ValidationError{Problems: probs}
	}
	c.Derive()
	return c, nil
}

// coveredBy reports whether key is, or is under, a key that already has a
// decoding problem: a value that failed to decode keeps its default, and
// validating that default would only add noise.
func coveredBy(key string, probs []Problem) bool {
	for _, p := range probs {
		if key == p.Key || strings.HasPrefix(key, p.Key+".") || strings.HasPrefix(key, p.Key+"[") {
			return true
		}
	}
	return false
}

// decodeFile lays the file's values over c, strictly: unknown keys and
// values of the wrong type are problems naming their key.
func decodeFile(fv *viper.Viper, c *Config) []Problem {
	prefill(fv.AllSettings(), c)
	err := fv.Unmarshal(c, func(dc *mapstructure.DecoderConfig) {
		dc.ErrorUnused = true
		dc.WeaklyTypedInput = false
		dc.ZeroFields = false
		dc.DecodeHook = mapstructure.DecodeHookFuncType(strictHook)
	})
	var probs []Problem
	collectDecodeErrors(err, &probs)
	return probs
}

// prefill gives list elements their per-element defaults before decoding:
// mapstructure decodes into existing slice elements and pointees, so
// defaults survive for keys an element does not set.
func prefill(raw map[string]any, c *Config) {
	if l, ok := raw["sources"].([]any); ok {
		c.Sources = make([]Source, len(l))
		for i := range c.Sources {
			c.Sources[i] = defaultSource()
		}
	}
	if l, ok := raw["sinks"].([]any); ok {
		c.Sinks = make([]Sink, len(l))
		for i, e := range l {
			if m, ok := e.(map[string]any); ok {
				if _, ok := m["file"].(map[string]any); ok {
					fs := defaultFileSink()
					c.Sinks[i].File = &fs
				}
				if mq, ok := m["mqtt"].(map[string]any); ok {
					if _, ok := mq["connection"].(map[string]any); ok {
						conn := defaultConnection()
						c.Sinks[i].MQTT = &MQTTSink{Connection: &conn}
					}
				}
			}
		}
	}
}

var (
	durationType   = reflect.TypeOf(time.Duration(0))
	sizeType       = reflect.TypeOf(Size(0))
	stringListType = reflect.TypeOf(StringList(nil))
)

// strictHook checks every file value against its target type and converts
// the special ones (durations, sizes, a single string for a StringList).
// With it, mapstructure only ever reports unknown keys.
func strictHook(from, to reflect.Type, data any) (any, error) {
	if data == nil {
		return nil, nil
	}
	fk := from.Kind()
	isInt := fk >= reflect.Int && fk <= reflect.Uint64
	isFloat := fk == reflect.Float32 || fk == reflect.Float64
	switch to {
	case durationType:
		switch {
		case fk == reflect.String:
			d, err := parseDuration(data.(string))
			if err != nil {
				return nil, err
			}
			return d, nil
		case (isInt || isFloat) && reflect.ValueOf(data).IsZero():
			return time.Duration(0), nil
		}
		return nil, fmt.Errorf("must be a duration with a unit such as 500ms, 30s or 1m30s, got %s", describe(data))
	case sizeType:
		switch {
		case fk == reflect.String:
			s, err := ParseSize(data.(string))
			if err != nil {
				return nil, err
			}
			return s, nil
		case isInt:
			return Size(reflect.ValueOf(data).Convert(reflect.TypeOf(int64(0))).Int()), nil
		case isFloat:
			if f := reflect.ValueOf(data).Float(); f == math.Trunc(f) && math.Abs(f) < 1<<62 {
				return Size(f), nil
			}
		}
		return nil, fmt.Errorf("must be a whole number of bytes or a size such as 64KiB, 256MiB, 1GiB, got %s", describe(data))
	case stringListType:
		if fk == reflect.String {
			return []any{data}, nil
		}
		if fk == reflect.Slice {
			return data, nil
		}
		return nil, fmt.Errorf("must be a field name or a list of field names, got %s", describe(data))
	}
	switch to.Kind() {
	case reflect.String:
		if fk != reflect.String {
			hint := ""
			if isInt || isFloat || fk == reflect.Bool {
				hint = " (quote it if you mean the text)"
			}
			return nil, fmt.Errorf("must be a string, got %s%s", describe(data), hint)
		}
	case reflect.Bool:
		if fk != reflect.Bool {
			return nil, fmt.Errorf("must be true or false, got %s", describe(data))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		switch {
		case isInt:
		case isFloat:
			if f := reflect.ValueOf(data).Float(); f != math.Trunc(f) || math.Abs(f) > 1<<53 {
				return nil, fmt.Errorf("must be a whole number, got %s", describe(data))
			}
		default:
			return nil, fmt.Errorf("must be a whole number, got %s", describe(data))
		}
	case reflect.Float32, reflect.Float64:
		if !isInt && !isFloat {
			return nil, fmt.Errorf("must be a number, got %s", describe(data))
		}
	case reflect.Struct, reflect.Map:
		if fk != reflect.Map {
			return nil, fmt.Errorf("must be a mapping (key: value lines or {key: value}), got %s", describe(data))
		}
	case reflect.Slice:
		if fk != reflect.Slice && fk != reflect.Array {
			return nil, fmt.Errorf("must be a list, got %s", describe(data))
		}
	case reflect.Ptr:
		if e := to.Elem().Kind(); (e == reflect.Struct || e == reflect.Map) && fk != reflect.Map {
			return nil, fmt.Errorf("must be a mapping (key: value lines or {key: value}), got %s", describe(data))
		}
	}
	return data, nil
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want Go syntax such as 500ms, 5s, 1m30s, 2h", s)
	}
	return d, nil
}

// describe renders a YAML value for an error message.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("string %q", x)
	case bool:
		return fmt.Sprintf("boolean %t", x)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return fmt.Sprintf("number %v", v)
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map:
		return "a mapping"
	}
	return fmt.Sprintf("%T %v", v, v)
}

// collectDecodeErrors flattens mapstructure's joined errors into problems.
func collectDecodeErrors(err error, out *[]Problem) {
	if err == nil {
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			collectDecodeErrors(e, out)
		}
		return
	}
	de, ok := err.(*mapstructure.DecodeError)
	if !ok {
		// Decode wraps joined errors in a message of its own.
		var nested *mapstructure.DecodeError
		if inner := errors.Unwrap(err); inner != nil && errors.As(inner, &nested) {
			collectDecodeErrors(inner, out)
			return
		}
		*out = append(*out, Problem{Msg: err.Error()})
		return
	}
	inner := de.Unwrap()
	var nested *mapstructure.DecodeError
	if _, ok := inner.(interface{ Unwrap() []error }); ok || errors.As(inner, &nested) {
		collectDecodeErrors(inner, out)
		return
	}
	name := normalizeKey(de.Name())
	if name == rootTypeName {
		// mapstructure >= 2.5 names the root by its Go type, not "".
		name = ""
	}
	msg := inner.Error()
	if rest, ok := strings.CutPrefix(msg, "has invalid keys: "); ok {
		for _, k := range strings.Split(rest, ", ") {
			*out = append(*out, Problem{Key: joinKey(name, k), Msg: unknownKeyMsg(name, k)})
		}
		return
	}
	*out = append(*out, Problem{Key: name, Msg: msg})
}

var rootTypeName = reflect.TypeOf(Config{}).String()

var mapIndexRe = regexp.MustCompile(`\[([^\]]*[^\]0-9][^\]]*)\]`)

// normalizeKey turns mapstructure's map-entry names (stages[0].map[temp_f])
// into YAML paths (stages[0].map.temp_f); list indices stay bracketed.
func normalizeKey(name string) string {
	return mapIndexRe.ReplaceAllString(name, ".$1")
}

func joinKey(parent, k string) string {
	if parent == "" {
		return k
	}
	return parent + "." + k
}

// unknownKeyMsg names the keys allowed where k was found, and the nearest
// one when k looks like a typo of it.
func unknownKeyMsg(parent, k string) string {
	t := typeAt(reflect.TypeOf(Config{}), parent)
	for t != nil && t.Kind() == reflect.Ptr {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return "unknown key"
	}
	var allowed []string
	best, bestD := "", 3
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("mapstructure")
		if tag == "" {
			continue
		}
		allowed = append(allowed, tag)
		if d := editDistance(k, tag); d < bestD {
			best, bestD = tag, d
		}
	}
	msg := "unknown key"
	if best != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", best)
	}
	return msg + "; allowed: " + strings.Join(allowed, ", ")
}

// typeAt resolves a YAML key path to the Go type that holds it.
func typeAt(t reflect.Type, path string) reflect.Type {
	if path == "" {
		return t
	}
	for _, seg := range splitKey(path) {
		for t.Kind() == reflect.Ptr {
			t = t.Elem()
		}
		switch {
		case strings.HasPrefix(seg, "["):
			if t.Kind() != reflect.Slice {
				return nil
			}
			t = t.Elem()
		case t.Kind() == reflect.Map:
			t = t.Elem()
		case t.Kind() == reflect.Struct:
			f, ok := fieldByTag(t, seg)
			if !ok {
				return nil
			}
			t = f.Type
		default:
			return nil
		}
	}
	return t
}

// splitKey splits "a.b[2].c" into "a", "b", "[2]", "c".
func splitKey(path string) []string {
	var segs []string
	for _, part := range strings.Split(path, ".") {
		for {
			i := strings.IndexByte(part, '[')
			if i < 0 {
				break
			}
			if i > 0 {
				segs = append(segs, part[:i])
			}
			j := strings.IndexByte(part, ']')
			if j < i {
				break
			}
			segs = append(segs, part[i:j+1])
			part = part[j+1:]
		}
		if part != "" {
			segs = append(segs, part)
		}
	}
	return segs
}

func fieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("mapstructure") == tag {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Keys lists every scalar key reachable without a list index or a map
// entry, in schema order: exactly the keys that have an environment
// variable.
func Keys() []string {
	var keys []string
	walkScalars(reflect.ValueOf(Default()).Elem(), "", func(key string, _ reflect.Value) {
		keys = append(keys, key)
	})
	return keys
}

// EnvVar returns the environment variable that overrides key:
// EnvVar("http.listen") is "EDDY_HTTP_LISTEN".
func EnvVar(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(envKeyReplacer.Replace(key))
}

// walkScalars calls fn for every scalar field under v (a struct), skipping
// lists, maps and pointers.
func walkScalars(v reflect.Value, prefix string, fn func(key string, f reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("mapstructure")
		if tag == "" {
			continue
		}
		key := joinKey(prefix, tag)
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Struct:
			walkScalars(f, key, fn)
		case reflect.Slice, reflect.Map, reflect.Ptr:
		default:
			fn(key, f)
		}
	}
}

// applyEnv lays EDDY_* variables over c. The variables are read through a
// viper instance that holds nothing else, so every value it returns came
// from the environment; each is converted to its field's type here, with a
// problem naming both the variable and the key when it does not parse.
func applyEnv(c *Config) []Problem {
	ev := viper.New()
	ev.SetEnvPrefix(EnvPrefix)
	ev.SetEnvKeyReplacer(envKeyReplacer)
	ev.AutomaticEnv()
	var probs []Problem
	walkScalars(reflect.ValueOf(c).Elem(), "", func(key string, f reflect.Value) {
		_ = ev.BindEnv(key) // only fails without a key
		raw := ev.Get(key)
		if raw == nil {
			return
		}
		s, ok := raw.(string)
		if !ok {
			return
		}
		if err := setFromString(f, s); err != nil {
			probs = append(probs, Problem{Key: key, Msg: fmt.Sprintf("from %s=%q: %v", EnvVar(key), s, err)})
		}
	})
	return probs
}

// setFromString parses s as f's type and stores it.
func setFromString(f reflect.Value, s string) error {
	switch f.Type() {
	case durationType:
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
		return nil
	case sizeType:
		n, err := ParseSize(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(n))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("must be true or false")
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, f.Type().Bits())
		if err != nil {
			return fmt.Errorf("must be a whole number")
		}
		f.SetInt(n)
	case reflect.Float64, reflect.Float32:
		x, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return fmt.Errorf("must be a number")
		}
		f.SetFloat(x)
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}

// sortProblems puts problems in schema order (the order of the Config
// struct's fields, list elements by index, map entries and unknown keys by
// name after the known ones), keeping the order of problems at one key.
func sortProblems(probs []Problem) {
	rank := func(key string) []string {
		var r []string
		t := reflect.TypeOf(Config{})
		for _, seg := range splitKey(key) {
			for t != nil && t.Kind() == reflect.Ptr {
				t = t.Elem()
			}
			var tok string
			switch {
			case t == nil:
				tok = "2" + seg
			case strings.HasPrefix(seg, "["):
				n, _ := strconv.Atoi(strings.Trim(seg, "[]"))
				tok = fmt.Sprintf("0%010d", n)
				if t.Kind() == reflect.Slice {
					t = t.Elem()
				} else {
					t = nil
				}
			case t.Kind() == reflect.Struct:
				if f, ok := fieldByTag(t, seg); ok {
					tok = fmt.Sprintf("0%010d", f.Index[0])
					t = f.Type
				} else {
					tok, t = "2"+seg, nil
				}
			case t.Kind() == reflect.Map:
				tok, t = "1"+seg, t.Elem()
			default:
				tok, t = "2"+seg, nil
			}
			r = append(r, tok)
		}
		return r
	}
	sort.SliceStable(probs, func(i, j int) bool {
		return slices.Compare(rank(probs[i].Key), rank(probs[j].Key)) < 0
	})
}

// sortedKeys returns m's keys in order, for stable messages.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
