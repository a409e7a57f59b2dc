package eddytest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

var (
	buildOnce sync.Once
	buildDir  string
	eddyBin   string
	buildErr  error
)

// Binary builds cmd/eddy on first use in this test binary and returns its
// path (see the package documentation for the recipe and the race rule).
func Binary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "eddytest-bin-"); buildErr != nil {
			return
		}
		eddyBin = filepath.Join(buildDir, "eddy")
		args := []string{"build", "-ldflags", "-X github.com/eddy-stream/eddy/daemon.Version=test", "-o", eddyBin}
		if raceBuild {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "github.com/eddy-stream/eddy/cmd/eddy")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go %v: %v\n%s", cmd.Args[1:], err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return eddyBin
}

// RemoveBinary removes the binary Binary built, if any.
func RemoveBinary() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// Main is the TestMain of a suite that runs the binary: it runs the tests,
// then checks for leaked goroutines (goleak, with opts) and removes the
// binary.
func Main(m *testing.M, opts ...goleak.Option) {
	goleak.VerifyTestMain(m, append(opts, goleak.Cleanup(func(int) { RemoveBinary() }))...)
}
