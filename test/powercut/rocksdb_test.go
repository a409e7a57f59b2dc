package powercut_test

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/linxGnu/grocksdb"

	"github.com/eddy-stream/eddy/test/powercut"
)

const rocksChildEnv = "POWERCUT_ROCKSDB_CHILD"

func openRocks(dir string) (*grocksdb.DB, error) {
	o := grocksdb.NewDefaultOptions()
	defer o.Destroy()
	o.SetCreateIfMissing(true)
	return grocksdb.OpenDb(o, dir)
}

func rocksKey(i int) []byte { return []byte(fmt.Sprintf("k%08d", i)) }

// rocksChild writes synced keys into the RocksDB at dir for ever, flushing
// and checkpointing now and then, and prints "ack N" once key N is
// durable. The parent kills it with SIGKILL.
func rocksChild(dir string) error {
	db, err := openRocks(filepath.Join(dir, "db"))
	if err != nil {
		return err
	}
	ro := grocksdb.NewDefaultReadOptions()
	wo := grocksdb.NewDefaultWriteOptions()
	wo.SetSync(true)
	next := 0
	v, err := db.GetBytes(ro, []byte("next"))
	if err != nil {
		return err
	}
	if v != nil {
		next, _ = strconv.Atoi(string(v))
	}
	fo := grocksdb.NewDefaultFlushOptions()
	for i := next; ; i++ {
		b := grocksdb.NewWriteBatch()
		b.Put(rocksKey(i), []byte(strings.Repeat("v", 200)+strconv.Itoa(i)))
		b.Put([]byte("next"), []byte(strconv.Itoa(i+1)))
		if err := db.Write(wo, b); err != nil {
			return err
		}
		b.Destroy()
		fmt.Printf("ack %d\n", i)
		if i%40 == 39 {
			if err := db.Flush(fo); err != nil {
				return err
			}
		}
		if i%100 == 99 {
			cp, err := db.NewCheckpoint()
			if err != nil {
				return err
			}
			if err := cp.CreateCheckpoint(filepath.Join(dir, fmt.Sprintf("chk-%d", i)), 0); err != nil {
				return err
			}
			cp.Destroy()
			// RocksDB syncs the checkpoint directory, not its parent
			// after the rename; eddy's state.CreateCheckpoint does that.
			d, err := os.Open(dir)
			if err != nil {
				return err
			}
			if err := errors.Join(d.Sync(), d.Close()); err != nil {
				return err
			}
			fmt.Printf("chk %d\n", i)
		}
	}
}

// TestRocksDBSurvivesCuts runs RocksDB in a child process, kills it with
// SIGKILL at a random point together with a cut, and checks that every key
// it acknowledged after a synced write, and every checkpoint it finished, is
// there after the cut.
func TestRocksDBSurvivesCuts(t *testing.T) {
	fsys := powercut.Mount(t, t.TempDir())
	exe, err := os.Executable()
	must(t, err)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	// RocksDB creates its directory but does not fsync the parent; eddy's
	// data_dir layout does that. Without it the whole DB is rightly lost.
	must(t, os.Mkdir(filepath.Join(fsys.Dir(), "db"), 0o755))
	syncPath(t, fsys.Dir())
	acked := -1
	var chks []int
	for round := range 6 {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), rocksChildEnv+"="+fsys.Dir())
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		must(t, err)
		must(t, cmd.Start())
		stopAt := acked + 20 + rng.IntN(250)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 2 {
				continue
			}
			n, err := strconv.Atoi(f[1])
			must(t, err)
			switch f[0] {
			case "ack":
				acked = n
			case "chk":
				chks = append(chks, n)
			}
			if acked >= stopAt {
				break
			}
		}
		must(t, cmd.Process.Kill())
		_ = cmd.Wait() // killed
		if acked < stopAt {
			t.Fatalf("round %d: child stopped at key %d before %d", round, acked, stopAt)
		}
		must(t, fsys.Cut())

		db, err := openRocks(filepath.Join(fsys.Dir(), "db"))
		if err != nil {
			t.Fatalf("round %d: open after cut: %v", round, err)
		}
		checkRocks(t, db, acked, fmt.Sprintf("round %d db", round))
		db.Close()
		for _, c := range chks {
			o := grocksdb.NewDefaultOptions()
			cdb, err := grocksdb.OpenDbForReadOnly(o, filepath.Join(fsys.Dir(), fmt.Sprintf("chk-%d", c)), true)
			o.Destroy()
			if err != nil {
				t.Log(listTree(fsys.Dir()))
				t.Fatalf("round %d: open checkpoint %d after cut: %v", round, c, err)
			}
			checkRocks(t, cdb, c, fmt.Sprintf("round %d chk-%d", round, c))
			cdb.Close()
		}
	}
	t.Logf("%d keys, %d checkpoints", acked+1, len(chks))
}

func checkRocks(t *testing.T, db *grocksdb.DB, upTo int, what string) {
	t.Helper()
	ro := grocksdb.NewDefaultReadOptions()
	defer ro.Destroy()
	for i := 0; i <= upTo; i++ {
		v, err := db.GetBytes(ro, rocksKey(i))
		must(t, err)
		if !strings.HasSuffix(string(v), "v"+strconv.Itoa(i)) {
			t.Fatalf("%s: key %d = %q after the cut; it was acknowledged", what, i, v)
		}
	}
}

func listTree(root string) string {
	var b strings.Builder
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			fmt.Fprintf(&b, "%s %d\n", p, fi.Size())
		}
		return nil
	})
	return b.String()
}
