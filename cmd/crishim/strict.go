package main

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

// checkDocument walks a YAML document against the Go type it will be decoded
// into and returns every unknown key and every value that does not decode,
// each by its dotted path ("listen.mode: ..."), so an operator sees all the
// problems of a file at once and where each one is.
func checkDocument(data []byte, into any) []string {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return []string{"not valid YAML: " + strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")}
	}
	var doc any
	if err := json.Unmarshal(j, &doc); err != nil {
		return []string{err.Error()}
	}
	var problems []string
	walkDocument("", doc, reflect.TypeOf(into), &problems)
	return problems
}

var (
	jsonUnmarshaler = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()
	textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

func walkDocument(path string, v any, t reflect.Type, problems *[]string) {
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
			*problems = append(*problems, fmt.Sprintf("%s: want a mapping of keys, got %s", orTop(path), kindOf(v)))
			return
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				*problems = append(*problems, fmt.Sprintf("%s: unknown key", join(path, k)))
				continue
			}
			walkDocument(join(path, k), m[k], ft, problems)
		}
	case t.Kind() == reflect.Slice && !custom && t.Elem().Kind() != reflect.Uint8:
		l, ok := v.([]any)
		if !ok {
			*problems = append(*problems, fmt.Sprintf("%s: want a list, got %s", orTop(path), kindOf(v)))
			return
		}
		for i, e := range l {
			walkDocument(fmt.Sprintf("%s[%d]", path, i), e, t.Elem(), problems)
		}
	case t.Kind() == reflect.Map && !custom:
		m, ok := v.(map[string]any)
		if !ok {
			*problems = append(*problems, fmt.Sprintf("%s: want a mapping, got %s", orTop(path), kindOf(v)))
			return
		}
		for k, e := range m {
			walkDocument(join(path, k), e, t.Elem(), problems)
		}
	default:
		b, _ := json.Marshal(v)
		if err := json.Unmarshal(b, reflect.New(t).Interface()); err != nil {
			*problems = append(*problems, fmt.Sprintf("%s: %s", orTop(path), leafError(err, v)))
		}
	}
}

// jsonFields maps the JSON names of t's fields, inlined embedded structs
// included, to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
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
			for k, v := range jsonFields(ft) {
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

func orTop(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}
