// Package config reads, checks and compares eddy's configuration.
//
// The configuration is one YAML file (by default /etc/eddy/config.yaml)
// whose keys mirror the Config struct's mapstructure tags. Load starts from
// Default, lays the file over it, then the environment, and validates the
// result:
//
//	defaults  <  file  <  EDDY_* environment variables
//
// Every scalar key that is reachable without a list index has an
// environment variable named EDDY_ + the key path upper-cased with dots
// replaced by underscores: http.listen is EDDY_HTTP_LISTEN,
// state.memory.managed is EDDY_STATE_MEMORY_MANAGED. Keys returns the full
// list and EnvVar the name for one key. An empty variable counts as unset.
//
// # Strictness
//
// A key the schema does not know is an error naming its path (with a
// suggestion when it looks like a typo). A value of the wrong type is an
// error: a quoted "5" where a number is expected, a number where a duration
// is expected (except 0), a fraction where a whole number is expected.
// Durations use Go syntax (500ms, 5s, 1m30s); sizes are plain byte counts or
// a number with a unit (64KB = 64000, 64KiB = 65536, 256MiB, 1GiB).
//
// Key names are case-insensitive: the file is read through viper, which
// lower-cases every mapping key. That includes the user-chosen keys of
// pipeline.stages[].map, pipeline.stages[].aggregate and
// state.column_families, so output field names made by map and aggregate
// are always lower case. Values (expressions, topics, field names in key_by)
// keep their case.
//
// # Errors
//
// Load and Validate report every problem at once as a *ValidationError,
// one Problem per key, each naming the key path as written in YAML
// (pipeline.stages[2].window.size) and, where it helps, the allowed values.
// Errors reading or parsing the file itself are returned wrapped, not as a
// *ValidationError.
//
// # Derived values
//
// A few keys default to other keys: mqtt.client_id to "eddy-" +
// appliance_id, and the optional sources[].qos and sinks[].mqtt.qos to
// mqtt.qos. Load fills them in (see Config.Derive), so consumers of a
// loaded Config never see them empty.
package config
