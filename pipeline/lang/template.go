package lang

import (
	"errors"
	"strings"
)

// Template is a parsed topic template such as "results/{site}/{device}".
type Template struct {
	lits   []string // len(lits) == len(fields)+1
	fields []string
}

// ParseTemplate parses a topic template; placeholders are {field}, not
// empty and not nested.
func ParseTemplate(s string) (Template, error) {
	var t Template
	for {
		i := strings.IndexAny(s, "{}")
		if i < 0 {
			t.lits = append(t.lits, s)
			return t, nil
		}
		if s[i] == '}' {
			return Template{}, errors.New("has a } without a {")
		}
		j := strings.IndexAny(s[i+1:], "{}")
		if j < 0 || s[i+1+j] == '{' {
			return Template{}, errors.New("has a { without a }")
		}
		f := s[i+1 : i+1+j]
		if f == "" {
			return Template{}, errors.New("has an empty placeholder {}")
		}
		t.lits = append(t.lits, s[:i])
		t.fields = append(t.fields, f)
		s = s[i+1+j+1:]
	}
}

// Fields lists the placeholders of the template, in order.
func (t Template) Fields() []string { return t.fields }

// Render appends the template to dst with every placeholder replaced by
// lookup(field).
func (t Template) Render(dst []byte, lookup func(field string) string) []byte {
	for i, f := range t.fields {
		dst = append(dst, t.lits[i]...)
		dst = append(dst, lookup(f)...)
	}
	return append(dst, t.lits[len(t.lits)-1]...)
}
