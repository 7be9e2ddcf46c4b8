// Command healthcheck is the container healthcheck of the agentaudit
// images: the runtime image is distroless (no shell, curl or wget), so
// docker-compose runs this probe instead. It GETs the URL given as its only
// argument and exits 0 on a 2xx answer within the timeout, 1 otherwise.
//
//	healthcheck http://127.0.0.1:9465/readyz
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: healthcheck URL")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 2
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		fmt.Fprintf(stderr, "healthcheck: %s: %s\n", args[0], resp.Status)
		return 1
	}
	return 0
}
