package lang

import (
	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// options are the expr-lang options of every expression. Declaring the
// environment as map[string]any lets the VM read fields with a plain map
// lookup (OpLoadFast) instead of reflection; an undefined field is nil.
func options(asBool bool) []expr.Option {
	opts := []expr.Option{expr.Env(map[string]any{}), expr.AllowUndefinedVariables()}
	if asBool {
		opts = append(opts, expr.AsBool())
	}
	return opts
}

// CompileFilter compiles a filter: an expression over a reading's fields
// that must yield a boolean.
func CompileFilter(src string) (*vm.Program, error) {
	return expr.Compile(src, options(true)...)
}

// CompileMap compiles the expression of one map field over a reading's
// fields; it may yield any value.
func CompileMap(src string) (*vm.Program, error) {
	return expr.Compile(src, options(false)...)
}
