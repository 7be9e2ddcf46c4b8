// Command chdbfetch fetches and verifies the pinned libchdb into the cache
// and prints its path (used by `make deps` so parallel test binaries do not
// each download it).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/agentaudit/agentaudit/internal/chdb"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	p, err := chdb.LibraryPath(context.Background(), chdb.CacheDir(), log)
	if err != nil {
		log.Error("fetch libchdb", "err", err)
		os.Exit(1)
	}
	fmt.Println(p)
}
