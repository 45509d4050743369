// Command ferretdb-local runs FerretDB's embeddable package with the SQLite
// backend. It exists because a plain `go install` of FerretDB's own command
// builds a binary that panics at start-up (its version file is not in the
// module zip). Dev and test tooling only: production uses MongoDB 7.
//
// It also repairs two things in FerretDB v1.24's SQLite backend (DESIGN §3):
//
//   - The only filter FerretDB pushes into SQL is an exact {_id: value}, as
//     `WHERE _ferretdb_sjson->'$._id' = ?`, but the unique index it creates is on
//     `_ferretdb_sjson->"_id"`, a different expression, so SQLite scans the whole
//     table for every point read, update and delete. A watcher gives every
//     collection table an index on exactly the queried expression as soon as the
//     table exists (tables are listed in `_ferretdb_collections`).
//   - Transactions begin IMMEDIATE (`_txlock=immediate`), so a transaction that
//     reads and then writes waits for the write lock through the busy timeout
//     instead of failing with SQLITE_BUSY when another writer got there first.
//
// It commits with `synchronous=NORMAL` unless told otherwise (-synchronous): in
// WAL mode that syncs at checkpoints instead of on every commit, which SQLite
// documents as safe against corruption and against a crash of this process; only
// a power loss or OS crash can lose the last commits. SQLite has one writer, so a
// sync per commit caps every write the services make (about 1 ms each here). This
// store is for dev and tests; production runs MongoDB.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	_ "modernc.org/sqlite" // the driver FerretDB itself uses
)

// idIndexSuffix names our index; FerretDB names its own "<table>_<index name>"
// and index names cannot contain a double underscore prefix clash with ours.
const idIndexSuffix = "__ferretdb_local_id_path"

// missingIndexes lists collection tables that lack our `_id` path index.
const missingIndexes = `SELECT c.table_name FROM _ferretdb_collections AS c
WHERE NOT EXISTS (SELECT 1 FROM sqlite_master AS m WHERE m.type = 'index' AND m.name = c.table_name || ?)`

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("data-dir", "./ferretdb-data", "directory for the SQLite databases")
	indexEvery := flag.Duration("index-interval", 200*time.Millisecond, "how often new collection tables are given the _id path index")
	synchronous := flag.String("synchronous", "normal", "SQLite synchronous mode for FerretDB's connections: normal or full")
	flag.Parse()
	if *synchronous != "normal" && *synchronous != "full" {
		log.Fatalf("-synchronous: want normal or full, got %q", *synchronous)
	}

	abs, err := filepath.Abs(*dataDir)
	if err != nil {
		log.Fatalf("data dir: %v", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		log.Fatalf("data dir: %v", err)
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/?_txlock=immediate&_pragma=synchronous(" + *synchronous + ")",
	})
	if err != nil {
		log.Fatalf("ferretdb: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	go watchIndexes(ctx, abs, *indexEvery)

	fmt.Fprintf(os.Stderr, "ferretdb-local listening on %s, data in %s\n", *listen, abs)
	if err := f.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatalf("ferretdb: %v", err)
	}
}

// watchIndexes keeps every collection table of every database file indexed on
// the `_id` path expression FerretDB queries, until ctx ends.
func watchIndexes(ctx context.Context, dir string, every time.Duration) {
	dbs := map[string]*sql.DB{}
	defer func() {
		for _, db := range dbs {
			_ = db.Close()
		}
	}()

	ticker := time.NewTicker(every)
	defer ticker.Stop()

	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*.sqlite"))
		for _, file := range files {
			db, ok := dbs[file]
			if !ok {
				uri := "file:" + file + "?_pragma=busy_timeout(10000)&_txlock=immediate"
				if db, err := sql.Open("sqlite", uri); err == nil {
					db.SetMaxOpenConns(1)
					dbs[file] = db
				}
				db = dbs[file]
			}
			if db == nil {
				continue
			}
			if err := indexTables(ctx, db); err != nil && ctx.Err() == nil {
				// A database file being created has no metadata table yet: try again.
				if !strings.Contains(err.Error(), "no such table") {
					log.Printf("ferretdb-local: _id index on %s: %v", filepath.Base(file), err)
				}
			}
		}

		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// indexTables creates the `_id` path index on each table that lacks it.
func indexTables(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, missingIndexes, idIndexSuffix)
	if err != nil {
		return err
	}
	var tables []string
	for rows.Next() {
		var table string
		if err := rows.Scan(&table); err != nil {
			_ = rows.Close()
			return err
		}
		tables = append(tables, table)
	}
	_ = rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}

	for _, table := range tables {
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, table+idIndexSuffix, table)
		if _, err := db.ExecContext(ctx, q); err != nil {
			// The table may have been dropped meanwhile: the next pass looks again.
			if !strings.Contains(err.Error(), "no such table") {
				return err
			}
		}
	}
	return nil
}
