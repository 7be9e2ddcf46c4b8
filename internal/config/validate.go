package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Sentinel errors for common validation failures; wrap them with the detail,
// fmt.Errorf("%w: %q", ErrInvalid, v), and match them with errors.Is.
var (
	ErrRequired = errors.New("must not be empty")
	ErrInvalid  = errors.New("invalid value")
)

// Validator is a configuration value that checks its own fields. It should
// not call Validate on nested configs: the Validate function does.
type Validator interface {
	Validate() error
}

// FieldError is a validation error located by its YAML path, such as
// "ingest.kafka.brokers".
type FieldError struct {
	Path string
	Err  error
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

// Field returns err for the field with the YAML key name (or a dotted path)
// of the struct being validated; the Validate function prefixes the path of
// the struct. Field returns nil if err is nil.
func Field(name string, err error) error {
	if err == nil {
		return nil
	}
	return &FieldError{Path: name, Err: err}
}

// Validate walks cfg — through pointers, interfaces, struct fields, slices,
// arrays and maps — calls Validate on every value that implements Validator,
// and returns all errors joined (errors.Join), each a *FieldError with the
// value's YAML path in front, e.g. "ingest.kafka.brokers: must not be empty".
// Nil pointers and unexported fields are skipped.
func Validate(cfg any) error {
	w := walker{seen: map[visit]bool{}}
	w.walk(reflect.ValueOf(cfg), "")
	return errors.Join(w.errs...)
}

var validatorType = reflect.TypeFor[Validator]()

type visit struct {
	ptr uintptr
	typ reflect.Type
}

type walker struct {
	errs []error
	seen map[visit]bool
}

func (w *walker) walk(v reflect.Value, path string) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return
		}
		if v.Kind() == reflect.Pointer {
			k := visit{v.Pointer(), v.Type()}
			if w.seen[k] {
				return
			}
			w.seen[k] = true
		}
		v = v.Elem()
	}
	if !v.IsValid() {
		return
	}
	if err := callValidate(v); err != nil {
		w.errs = append(w.errs, prefixPath(path, err)...)
	}
	switch v.Kind() {
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			w.walk(v.Field(i), joinPath(path, yamlKey(f)))
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			w.walk(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int {
			return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
		})
		for _, k := range keys {
			w.walk(v.MapIndex(k), joinPath(path, fmt.Sprint(k)))
		}
	}
}

// callValidate calls Validate on v or, for a pointer-receiver method, on &v
// (a copy when v is not addressable, e.g. a map value).
func callValidate(v reflect.Value) error {
	if v.Type().Implements(validatorType) {
		return v.Interface().(Validator).Validate()
	}
	if !reflect.PointerTo(v.Type()).Implements(validatorType) {
		return nil
	}
	if v.CanAddr() {
		return v.Addr().Interface().(Validator).Validate()
	}
	p := reflect.New(v.Type())
	p.Elem().Set(v)
	return p.Interface().(Validator).Validate()
}

// prefixPath locates err at path, flattening joined errors so that every
// returned error is one *FieldError.
func prefixPath(path string, err error) []error {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range joined.Unwrap() {
			out = append(out, prefixPath(path, e)...)
		}
		return out
	}
	if fe, ok := err.(*FieldError); ok {
		return []error{&FieldError{Path: joinPath(path, fe.Path), Err: fe.Err}}
	}
	if path == "" {
		return []error{err}
	}
	return []error{&FieldError{Path: path, Err: err}}
}

func joinPath(path, key string) string {
	switch {
	case path == "":
		return key
	case key == "":
		return path
	}
	return path + "." + key
}

// yamlKey is the key yaml.v3 uses for f: the tag's name, "" for an inlined
// field, else the lower-cased field name.
func yamlKey(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	name, opts, _ := strings.Cut(tag, ",")
	if slices.Contains(strings.Split(opts, ","), "inline") {
		return ""
	}
	if name == "" || name == "-" {
		return strings.ToLower(f.Name)
	}
	return name
}
