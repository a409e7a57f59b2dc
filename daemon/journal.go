package daemon

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

// ExitWatchdogAbort is the exit status after CatchWatchdogAbort handled
// SIGABRT (128 + SIGABRT, as if the signal had killed eddy).
const ExitWatchdogAbort = 134

// CatchWatchdogAbort handles SIGABRT, the signal systemd sends when the
// watchdog expires (WatchdogSignal=SIGABRT in eddy.service), until the
// returned function is called. Go's default reaction writes every
// goroutine's stack to stderr, which the journal stores line by line at
// the unit's default priority (hundreds of lines). Instead eddy logs one
// error line saying what happened, writes the goroutine dump to w at debug
// priority (each line "<7>"-prefixed when w is the journal stream, so
// `journalctl -u eddy -p info` leaves it out and `-p debug` has it), and
// exits with ExitWatchdogAbort. exit is os.Exit outside tests.
func CatchWatchdogAbort(log *slog.Logger, w io.Writer, exit func(int)) (release func()) {
	if exit == nil {
		exit = os.Exit
	}
	journal := false
	if f, ok := w.(*os.File); ok {
		journal = IsJournalStream(f)
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGABRT)
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
			return
		case <-ch:
		}
		log.Error("SIGABRT: the systemd watchdog expired (no progress for WatchdogSec) or eddy was aborted; " +
			"exiting, systemd restarts it. The goroutine dump follows at debug priority (journalctl -u eddy -p debug).")
		writeGoroutineDump(w, journal)
		exit(ExitWatchdogAbort)
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

// writeGoroutineDump writes every goroutine's stack to w, each line
// prefixed with the journal's debug priority when journal is set.
func writeGoroutineDump(w io.Writer, journal bool) {
	var buf bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&buf, 2)
	if !journal {
		w.Write(buf.Bytes())
		return
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		out.WriteString("<7>")
		out.Write(sc.Bytes())
		out.WriteByte('\n')
	}
	w.Write(out.Bytes())
}
