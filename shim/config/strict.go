// Package config checks crishim's YAML files strictly before they are
// decoded: every unknown key and every value of the wrong type is reported by
// its dotted path ("listen.mode", "providers[1].matchImages[0]"), all at once,
// so an operator fixes a file in one go instead of one error per restart.
package config

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Problem is one thing wrong in a document.
type Problem struct {
	// Path locates it: "listen.mode", "handlers[1].overhead.cpu"; empty for
	// the document as a whole.
	Path string
	// Msg says what is wrong: "unknown key", "want a string, got a list".
	Msg string
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Msg
	}
	return p.Path + ": " + p.Msg
}

// Check walks a YAML (or JSON) document against the Go type it will be
// decoded into and returns every unknown key and every value that does not
// decode into its field's type. A document without problems decodes with
// sigs.k8s.io/yaml's strict decoder.
func Check(data []byte, into any) []Problem {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return []Problem{{Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")}}
	}
	var doc any
	if err := json.Unmarshal(j, &doc); err != nil {
		return []Problem{{Msg: err.Error()}}
	}
	var problems []Problem
	walkDocument("", doc, reflect.TypeOf(into), &problems)
	return problems
}

// Strings formats problems one per entry.
func Strings(problems []Problem) []string {
	out := make([]string, len(problems))
	for i, p := range problems {
		out[i] = p.String()
	}
	return out
}

var (
	jsonUnmarshaler = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()
	textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

func walkDocument(path string, v any, t reflect.Type, problems *[]Problem) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return // null leaves the default
	}
	custom := reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler)
	switch {
	case t.Kind() == reflect.Struct && !custom:
		m, ok := v.(map[string]any)
		if !ok {
			*problems = append(*problems, Problem{path, "want a mapping of keys, got " + kindOf(v)})
			return
		}
		fields := JSONFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				*problems = append(*problems, Problem{join(path, k), "unknown key"})
				continue
			}
			walkDocument(join(path, k), m[k], ft, problems)
		}
	case t.Kind() == reflect.Slice && !custom && t.Elem().Kind() != reflect.Uint8:
		l, ok := v.([]any)
		if !ok {
			*problems = append(*problems, Problem{path, "want a list, got " + kindOf(v)})
			return
		}
		for i, e := range l {
			walkDocument(fmt.Sprintf("%s[%d]", path, i), e, t.Elem(), problems)
		}
	case t.Kind() == reflect.Map && !custom:
		m, ok := v.(map[string]any)
		if !ok {
			*problems = append(*problems, Problem{path, "want a mapping, got " + kindOf(v)})
			return
		}
		for k, e := range m {
			walkDocument(join(path, k), e, t.Elem(), problems)
		}
	default:
		b, _ := json.Marshal(v)
		if err := json.Unmarshal(b, reflect.New(t).Interface()); err != nil {
			*problems = append(*problems, Problem{path, leafError(err, v)})
		}
	}
}

// JSONFields maps the JSON names of t's fields, inlined embedded structs
// included, to their types.
func JSONFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			for k, v := range JSONFields(ft) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func leafError(err error, v any) string {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return fmt.Sprintf("want %s, got %s", describeType(ute.Type), kindOf(v))
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a " + t.String()
}

func kindOf(v any) string {
	switch v := v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return fmt.Sprintf("the string %q", v)
	case float64:
		return fmt.Sprintf("the number %v", v)
	case bool:
		return fmt.Sprintf("%v", v)
	}
	return fmt.Sprintf("%T", v)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
