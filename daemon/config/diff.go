package config

import (
	"fmt"
	"reflect"
	"slices"
	"time"
)

// RedactedValue is the placeholder that replaces secrets in Redacted.
const RedactedValue = "***"

// reloadableKeys are the keys a running eddy applies on SIGHUP.
var reloadableKeys = []string{
	"log.level",
	"checkpointing.interval",
	"checkpointing.min_pause",
	"upload.bandwidth",
}

// ReloadableKeys lists the keys that can change without a restart.
func ReloadableKeys() []string { return slices.Clone(reloadableKeys) }

// Clone returns a deep copy of c.
func (c *Config) Clone() *Config {
	out := reflect.New(reflect.TypeOf(*c)).Elem()
	deepCopy(out, reflect.ValueOf(*c))
	cc := out.Interface().(Config)
	return &cc
}

func deepCopy(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Struct:
		for i := 0; i < src.NumField(); i++ {
			deepCopy(dst.Field(i), src.Field(i))
		}
	case reflect.Ptr:
		if src.IsNil() {
			return
		}
		p := reflect.New(src.Type().Elem())
		deepCopy(p.Elem(), src.Elem())
		dst.Set(p)
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		s := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := 0; i < src.Len(); i++ {
			deepCopy(s.Index(i), src.Index(i))
		}
		dst.Set(s)
	case reflect.Map:
		if src.IsNil() {
			return
		}
		m := reflect.MakeMapWithSize(src.Type(), src.Len())
		it := src.MapRange()
		for it.Next() {
			v := reflect.New(src.Type().Elem()).Elem()
			deepCopy(v, it.Value())
			m.SetMapIndex(it.Key(), v)
		}
		dst.Set(m)
	default:
		dst.Set(src)
	}
}

// Redacted returns a deep copy of c for display, with every secret that is
// set (mqtt.password, upload.secret_access_key, http.token) replaced by
// "***". Paths to secret files are kept.
func (c *Config) Redacted() *Config {
	r := c.Clone()
	for _, s := range []*string{&r.MQTT.Password, &r.Upload.SecretAccessKey, &r.HTTP.Token} {
		if *s != "" {
			*s = RedactedValue
		}
	}
	return r
}

// ReloadableDiff compares two configurations and returns the key paths that
// differ, split into those a running eddy can apply (log.level,
// checkpointing.interval, checkpointing.min_pause, upload.bandwidth) and
// those that need a restart. A list whose length changed is reported as the
// list's key (sources); otherwise changes are reported per element
// (sources[0].topic). Both lists are in schema order.
func ReloadableDiff(old, new *Config) (reloadable []string, refused []string) {
	var changed []string
	diffValues(reflect.ValueOf(*old), reflect.ValueOf(*new), "", &changed)
	for _, k := range changed {
		if slices.Contains(reloadableKeys, k) {
			reloadable = append(reloadable, k)
		} else {
			refused = append(refused, k)
		}
	}
	return reloadable, refused
}

func diffValues(a, b reflect.Value, key string, out *[]string) {
	switch a.Kind() {
	case reflect.Struct:
		t := a.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := t.Field(i).Tag.Get("mapstructure")
			if tag == "" {
				continue
			}
			diffValues(a.Field(i), b.Field(i), joinKey(key, tag), out)
		}
	case reflect.Ptr:
		switch {
		case a.IsNil() && b.IsNil():
		case a.IsNil() != b.IsNil():
			*out = append(*out, key)
		default:
			diffValues(a.Elem(), b.Elem(), key, out)
		}
	case reflect.Slice:
		if a.Type().Elem().Kind() != reflect.Struct || a.Len() != b.Len() {
			if !reflect.DeepEqual(emptyNil(a), emptyNil(b)) {
				*out = append(*out, key)
			}
			return
		}
		for i := 0; i < a.Len(); i++ {
			diffValues(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", key, i), out)
		}
	case reflect.Map:
		keys := map[string]bool{}
		for _, m := range []reflect.Value{a, b} {
			for _, k := range m.MapKeys() {
				keys[k.String()] = true
			}
		}
		for _, k := range sortedKeys(keys) {
			kv := reflect.ValueOf(k).Convert(a.Type().Key())
			av, bv := a.MapIndex(kv), b.MapIndex(kv)
			switch {
			case !av.IsValid() || !bv.IsValid():
				*out = append(*out, joinKey(key, k))
			default:
				diffValues(av, bv, joinKey(key, k), out)
			}
		}
	default:
		if !a.Equal(b) {
			*out = append(*out, key)
		}
	}
}

// emptyNil treats a nil and an empty slice alike.
func emptyNil(v reflect.Value) any {
	if v.Len() == 0 {
		return nil
	}
	return v.Interface()
}

// AsMap renders c as nested maps keyed by the YAML keys, with durations and
// sizes as strings ("5s", "256MiB"), ready for JSON or YAML output. Use it
// on Redacted() for display.
func (c *Config) AsMap() map[string]any {
	return asMap(reflect.ValueOf(*c)).(map[string]any)
}

func asMap(v reflect.Value) any {
	switch v.Type() {
	case durationType:
		return time.Duration(v.Int()).String()
	case sizeType:
		return Size(v.Int()).String()
	}
	switch v.Kind() {
	case reflect.Struct:
		m := map[string]any{}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			if tag := t.Field(i).Tag.Get("mapstructure"); tag != "" {
				m[tag] = asMap(v.Field(i))
			}
		}
		return m
	case reflect.Ptr:
		if v.IsNil() {
			return nil
		}
		return asMap(v.Elem())
	case reflect.Slice:
		l := make([]any, v.Len())
		for i := range l {
			l[i] = asMap(v.Index(i))
		}
		return l
	case reflect.Map:
		m := map[string]any{}
		it := v.MapRange()
		for it.Next() {
			m[it.Key().String()] = asMap(it.Value())
		}
		return m
	}
	return v.Interface()
}
