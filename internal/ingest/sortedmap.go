package ingest

import (
	"slices"

	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
)

// sortedMap presents a map[string]string to a Map column in key order.
//
// Go randomizes map iteration order, and the driver appends a plain map in
// iteration order: two rows with the same attributes then become different
// byte sequences, and a column where most rows repeat one of a few attribute
// sets (resource attributes: one set per service instance) compresses several
// times worse than it should. In key order they repeat byte for byte.
//
// One sortedMap is reused row after row: the driver consumes it within
// AppendRow.
type sortedMap struct {
	m    map[string]string
	keys []string
	i    int
}

var (
	_ column.IterableOrderedMap = (*sortedMap)(nil)
	_ column.MapIterator        = (*sortedMap)(nil)
)

// of makes s present m (nil is the empty map).
func (s *sortedMap) of(m map[string]string) *sortedMap {
	s.m = m
	s.keys = s.keys[:0]
	for k := range m {
		s.keys = append(s.keys, k)
	}
	slices.Sort(s.keys)
	s.i = -1
	return s
}

// Put adds a key (the driver calls it only when scanning a Map into an
// IterableOrderedMap, which ingest never does).
func (s *sortedMap) Put(k, v any) {
	ks, vs := k.(string), v.(string)
	if s.m == nil {
		s.m = make(map[string]string)
	}
	if _, ok := s.m[ks]; !ok {
		s.keys = append(s.keys, ks)
		slices.Sort(s.keys)
	}
	s.m[ks] = vs
}

func (s *sortedMap) Iterator() column.MapIterator { s.i = -1; return s }
func (s *sortedMap) Next() bool                   { s.i++; return s.i < len(s.keys) }
func (s *sortedMap) Key() any                     { return s.keys[s.i] }
func (s *sortedMap) Value() any                   { return s.m[s.keys[s.i]] }
