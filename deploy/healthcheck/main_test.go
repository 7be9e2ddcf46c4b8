package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRun(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			_, _ = io.WriteString(w, `{"status":"ok"}`)
		case "/starting":
			http.Error(w, "starting", http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{srv.URL + "/readyz"}, 0},
		{[]string{srv.URL + "/starting"}, 1},
		{[]string{srv.URL + "/nope"}, 1},
		{[]string{closed.URL + "/readyz"}, 1},
		{nil, 2},
		{[]string{"a", "b"}, 2},
		{[]string{"http://[::1"}, 2},
	} {
		if got := run(tc.args, io.Discard); got != tc.want {
			t.Errorf("run(%q) = %d, want %d", tc.args, got, tc.want)
		}
	}
}
