// Package systemd runs the eddy .deb under a real systemd, as an operator
// meets it: a Debian bookworm tree made by debootstrap (cached under
// /var/cache/eddy-test/, keyed by the recipe), booted with
// `systemd-nspawn -b` on a throwaway overlay, the .deb from `make deb`
// installed with apt, eddy driven with systemctl and journalctl through
// nsenter into the container's namespaces (machinectl needs systemd as the
// host's PID 1, which CI does not have).
//
// It needs root, debootstrap, systemd-nspawn and nsenter (Debian packages
// debootstrap, systemd-container, util-linux; `make test-deps` installs
// them) and the apt mirror this machine is configured with. Without them
// it skips and says why.
package systemd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const repoRoot = "../.."

// cacheDir holds the debootstrapped trees between runs.
const cacheDir = "/var/cache/eddy-test"

// Packages in the tree besides minbase: systemd as init, mosquitto (the
// broker the packaged configuration points at), and the .deb's runtime
// dependencies, so that apt installs the .deb inside the container, which
// has no network (--private-network).
var include = []string{"systemd", "systemd-sysv", "dbus", "mosquitto", "librocksdb7.8", "libjemalloc2", "passwd"}

func requirements(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the systemd test boots a container (systemd-nspawn) and needs root; CI runs it as root — skipped")
	}
	for _, tool := range []string{"debootstrap", "systemd-nspawn", "nsenter", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install debootstrap systemd-container, or make test-deps) — skipped", tool)
		}
	}
}

// mirror is the Debian archive apt on this machine uses for bookworm.
func mirror() string {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	files = append([]string{"/etc/apt/sources.list"}, files...)
	oneLine := regexp.MustCompile(`(?m)^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s`)
	deb822 := regexp.MustCompile(`(?m)^URIs:\s*(\S+)\s*$`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if m := oneLine.FindSubmatch(b); m != nil && !bytes.Contains(m[1], []byte("security")) {
			return string(m[1])
		}
		for _, stanza := range strings.Split(string(b), "\n\n") {
			if !regexp.MustCompile(`(?m)^Suites:.*\bbookworm\b`).MatchString(stanza) {
				continue
			}
			if m := deb822.FindStringSubmatch(stanza); m != nil && !strings.Contains(m[1], "security") {
				return m[1]
			}
		}
	}
	return "http://deb.debian.org/debian"
}

// tree returns a debootstrapped bookworm tree, made once per recipe.
func tree(t *testing.T) string {
	t.Helper()
	m := mirror()
	recipe := fmt.Sprintf("debootstrap --variant=minbase --include=%s bookworm %s", strings.Join(include, ","), m)
	sum := sha256.Sum256([]byte(recipe))
	dir := filepath.Join(cacheDir, "bookworm-"+hex.EncodeToString(sum[:])[:12])
	if _, err := os.Stat(filepath.Join(dir, ".eddy-recipe")); err == nil {
		t.Logf("tree %s (cached)", dir)
		return dir
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(cacheDir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".eddy-recipe")); err == nil {
		return dir // made by another run meanwhile
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	t0 := time.Now()
	t.Logf("making the bookworm tree: %s (a few minutes, once)", recipe)
	args := []string{"--variant=minbase", "--include=" + strings.Join(include, ","), "bookworm", tmp, m}
	if out, err := exec.Command("debootstrap", args...).CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		t.Fatalf("debootstrap %s: %v\n%s", strings.Join(args, " "), err, tail(out, 40))
	}
	// Not needed in a test container; keeps boot short and quiet.
	os.WriteFile(filepath.Join(tmp, "etc/hostname"), []byte("eddy-test\n"), 0o644)
	if err := os.WriteFile(filepath.Join(tmp, ".eddy-recipe"), []byte(recipe+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("tree %s made in %s", dir, time.Since(t0).Round(time.Second))
	return dir
}

func tail(b []byte, n int) []byte {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, []byte("\n"))
}

// buildDeb runs `make deb` into dir and returns the .deb.
func buildDeb(t *testing.T, dir string, version string) string {
	t.Helper()
	args := []string{"-C", repoRoot, "deb", "DIST=" + dir}
	if version != "" {
		args = append(args, "PKG_VERSION="+version)
	}
	if out, err := exec.Command("make", args...).CombinedOutput(); err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, tail(out, 30))
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "eddy_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v", debs)
	}
	return debs[0]
}

// overlay mounts a writable overlay over lower and returns its root.
func overlay(t *testing.T, lower string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "eddy-systemd-")
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	for _, d := range []string{"upper", "work", "root"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
	if err := syscall.Mount("overlay", root, "overlay", 0, opts); err != nil {
		os.RemoveAll(dir)
		t.Skipf("cannot mount an overlay over the cached tree (%v) — skipped", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(root, 0); err != nil {
			syscall.Unmount(root, syscall.MNT_DETACH)
		}
		os.RemoveAll(dir)
	})
	return root
}

// container is a booted systemd-nspawn container.
type container struct {
	t    *testing.T
	cmd  *exec.Cmd
	pid1 int
	log  string
	done chan error
}

func boot(t *testing.T, root string) *container {
	t.Helper()
	logf := filepath.Join(filepath.Dir(root), "console.log")
	f, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("systemd-nspawn", "-b", "--keep-unit", "--register=no", "--private-network",
		"--console=pipe", "-D", root)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	c := &container{t: t, cmd: cmd, log: logf, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait(); f.Close() }()
	t.Cleanup(c.stop)
	deadline := time.Now().Add(60 * time.Second)
	for c.pid1 == 0 {
		select {
		case err := <-c.done:
			c.done <- err
			b, _ := os.ReadFile(logf)
			t.Fatalf("systemd-nspawn exited: %v\n%s", err, tail(b, 30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no systemd in the container after 60s")
		}
		c.pid1 = childNamed(cmd.Process.Pid, "systemd")
		if c.pid1 == 0 {
			time.Sleep(50 * time.Millisecond) // polling /proc for the container's init
		}
	}
	// Boot done: running, or degraded when some unit of the minimal tree
	// does not start in a container; both are fine here.
	// Until systemd listens on its private socket, systemctl cannot talk to it.
	out, _ := c.sh("i=0; until [ -S /run/systemd/private ] || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done; " +
		"timeout 120 systemctl is-system-running --wait")
	if s := strings.TrimSpace(out); s != "running" && s != "degraded" {
		b, _ := os.ReadFile(logf)
		t.Fatalf("container did not boot: is-system-running %q\n%s", s, tail(b, 40))
	}
	return c
}

// childNamed is the pid of a child of parent whose comm is name, or 0.
func childNamed(parent int, name string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(s[j+1:])
		if len(f) < 2 || s[i+1:j] != name {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == parent {
			return pid
		}
	}
	return 0
}

// stop powers the container off (SIGTERM to systemd-nspawn makes its
// systemd shut down) and kills it if that takes over a minute.
func (c *container) stop() {
	if c.cmd.Process == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		c.done <- err
		return
	case <-time.After(60 * time.Second):
	}
	syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.done
	c.done <- nil
}

// sh runs script with /bin/sh inside the container.
func (c *container) sh(script string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(c.pid1), "-a", "--", "/bin/sh", "-c", script)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0",
		"DEBIAN_FRONTEND=noninteractive", "HOME=/root", "TERM=dumb"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must runs script and fails the test if it fails.
func (c *container) must(script string) string {
	c.t.Helper()
	out, err := c.sh(script)
	if err != nil {
		c.t.Fatalf("in the container: %s: %v\n%s", script, err, out)
	}
	return out
}

// prop is one property of eddy.service (systemctl show).
func (c *container) prop(name string) string {
	c.t.Helper()
	return strings.TrimSpace(c.must("systemctl show -P " + name + " eddy.service"))
}

// waitFor polls cond (systemd's view, read with systemctl) until it holds.
func (c *container) waitFor(what string, timeout time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			out, _ := c.sh("systemctl status --no-pager -n 30 eddy.service")
			c.t.Fatalf("timed out after %s waiting for %s\n%s", timeout, what, out)
		}
		time.Sleep(200 * time.Millisecond) // polling systemd's state of the unit
	}
}

func (c *container) waitActive(timeout time.Duration) {
	c.t.Helper()
	c.waitFor("eddy.service active (READY=1)", timeout, func() bool {
		return c.prop("ActiveState") == "active"
	})
}

// journal is eddy's journal since the cursor-free marker since (a
// realtime in µs), at priority prio or higher.
func (c *container) journal(since time.Time, prio string) string {
	c.t.Helper()
	return c.must(fmt.Sprintf("journalctl --no-pager -q -o cat -u eddy.service -p %s --since=@%d.%06d",
		prio, since.Unix(), since.Nanosecond()/1000))
}

// now is the container's clock (the host's).
func (c *container) now() time.Time { return time.Now().Add(-10 * time.Millisecond) }

func (c *container) setConfig(body string) {
	c.t.Helper()
	c.must("cat > /etc/eddy/config.yaml.new <<'EOF'\n" + body + "EOF\n" +
		"chown root:eddy /etc/eddy/config.yaml.new && chmod 0640 /etc/eddy/config.yaml.new && mv /etc/eddy/config.yaml.new /etc/eddy/config.yaml")
}

func TestSystemd(t *testing.T) {
	requirements(t)
	t0 := time.Now()
	lower := tree(t)
	tTree := time.Since(t0)
	dist := t.TempDir()
	deb := buildDeb(t, filepath.Join(dist, "1"), "")
	up := buildDeb(t, filepath.Join(dist, "2"), "99.0.0")
	tBuild := time.Since(t0) - tTree
	root := overlay(t, lower)
	for src, dst := range map[string]string{deb: "root/eddy.deb", up: "root/eddy-up.deb"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Offline install, as an image build does it: a chroot, no systemd.
	if _, err := os.Stat(filepath.Join(root, "run/systemd/system")); err == nil {
		t.Fatal("the tree has /run/systemd/system; the offline install would not be offline")
	}
	if err := syscall.Mount("proc", filepath.Join(root, "proc"), "proc", 0, ""); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("chroot", root, "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "/root/eddy.deb").CombinedOutput()
	syscall.Unmount(filepath.Join(root, "proc"), syscall.MNT_DETACH)
	if err != nil {
		t.Fatalf("offline apt-get install /root/eddy.deb: %v\n%s", err, tail(out, 30))
	}
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/eddy.service")
	if _, err := os.Lstat(wants); err != nil {
		t.Errorf("offline install did not enable eddy.service (%v); the box would not start eddy on first boot", err)
	}
	// Test settings: a short watchdog and restart delay, so the watchdog
	// restart takes seconds; a 2 s checkpoint interval.
	dropin := filepath.Join(root, "etc/systemd/system/eddy.service.d")
	os.MkdirAll(dropin, 0o755)
	if err := os.WriteFile(filepath.Join(dropin, "test.conf"), []byte("[Service]\nWatchdogSec=5s\nRestartSec=1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgb, err := os.ReadFile(filepath.Join(root, "etc/eddy/config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(cfgb)
	if !strings.Contains(cfg, "  interval: 5s\n") {
		t.Fatalf("the packaged configuration has no checkpointing interval of 5s:\n%s", cfg)
	}
	cfg = strings.Replace(cfg, "  interval: 5s\n", "  interval: 2s\n", 1)
	if err := os.WriteFile(filepath.Join(root, "etc/eddy/config.yaml"), []byte(cfg), 0o640); err != nil {
		t.Fatal(err)
	}

	tBoot := time.Now()
	c := boot(t, root)
	t.Logf("booted in %s", time.Since(tBoot).Round(time.Millisecond))

	t.Run("enabled after the offline install, started at boot", func(t *testing.T) {
		c.t = t
		if s := strings.TrimSpace(c.must("systemctl is-enabled eddy.service || true")); s != "enabled" {
			t.Errorf("is-enabled = %q, want enabled", s)
		}
		c.waitActive(time.Minute)
	})
	c.t = t
	// The checks below do not depend on the one above.
	c.must("systemctl start eddy.service")
	c.waitActive(time.Minute)
	// Wait for a first checkpoint so that the restart has one to restore.
	c.waitFor("a completed checkpoint", time.Minute, func() bool {
		out, _ := c.sh("ls /var/lib/eddy/checkpoints/*/_metadata")
		return strings.Contains(out, "_metadata")
	})

	t.Run("restart takes a final checkpoint, READY after recovery", func(t *testing.T) {
		c.t = t
		since := c.now()
		c.must("systemctl restart eddy.service")
		if s := c.prop("ActiveState"); s != "active" {
			t.Fatalf("after systemctl restart (Type=notify: returns after READY=1): ActiveState %s", s)
		}
		j := c.journal(since, "info")
		if !strings.Contains(j, "final checkpoint completed") {
			t.Errorf("no final checkpoint on stop:\n%s", j)
		}
		if !strings.Contains(j, "restoring from checkpoint") {
			t.Errorf("no restore after the restart:\n%s", j)
		}
		if regexp.MustCompile(`"duration":\d{4,}`).MatchString(j) {
			t.Errorf("a duration in integer nanoseconds:\n%s", j)
		}
	})

	t.Run("reload of checkpointing.interval", func(t *testing.T) {
		c.t = t
		since := c.now()
		c.setConfig(strings.Replace(cfg, "  interval: 2s\n", "  interval: 3s\n", 1))
		if out, err := c.sh("systemctl reload eddy.service"); err != nil {
			t.Fatalf("systemctl reload: %v\n%s\n%s", err, out, c.journal(since, "debug"))
		}
		if j := c.journal(since, "info"); !strings.Contains(j, "configuration reloaded") || !strings.Contains(j, "2s → 3s") {
			t.Errorf("journal after the reload:\n%s", j)
		}
		cfg = strings.Replace(cfg, "  interval: 2s\n", "  interval: 3s\n", 1)
	})

	t.Run("reload of a broken file fails", func(t *testing.T) {
		c.t = t
		since := c.now()
		c.setConfig(cfg + "checkpointing: [\n")
		out, err := c.sh("systemctl reload eddy.service")
		if err == nil {
			t.Errorf("systemctl reload with a broken file succeeded:\n%s", out)
		}
		j := c.journal(since, "err")
		if !strings.Contains(j, "reload refused") {
			t.Errorf("journalctl -p err after the reload of a broken file:\n%s", j)
		}
		t.Logf("systemctl reload: %s\njournalctl -u eddy -p err:\n%s", strings.TrimSpace(out), j)
		if s := c.prop("ActiveState"); s != "active" {
			t.Errorf("eddy is %s after a refused reload, want active", s)
		}
		c.setConfig(cfg)
	})

	t.Run("reload of a change that needs a restart fails", func(t *testing.T) {
		c.t = t
		since := c.now()
		c.setConfig(strings.Replace(cfg, "appliance_id: appliance-1", "appliance_id: appliance-2", 1))
		out, err := c.sh("systemctl reload eddy.service")
		if err == nil {
			t.Errorf("systemctl reload of an appliance_id change succeeded:\n%s", out)
		}
		if j := c.journal(since, "warning"); !strings.Contains(j, "appliance_id") || !strings.Contains(j, "restart") {
			t.Errorf("journal after the refused reload:\n%s", j)
		}
		c.setConfig(cfg)
	})

	t.Run("watchdog restarts a stopped eddy, without a goroutine dump at info", func(t *testing.T) {
		c.t = t
		n0, _ := strconv.Atoi(c.prop("NRestarts"))
		pid := c.prop("MainPID")
		since := c.now()
		c.must("kill -STOP " + pid)
		c.waitFor("a watchdog restart", 90*time.Second, func() bool {
			n, _ := strconv.Atoi(c.prop("NRestarts"))
			return n > n0 && c.prop("ActiveState") == "active"
		})
		info := c.journal(since, "info")
		if n := strings.Count(info, "goroutine "); n > 2 {
			t.Errorf("%d goroutine lines at priority info or higher after the watchdog kill:\n%s", n, tail([]byte(info), 20))
		}
		errs := c.journal(since, "err")
		if !strings.Contains(errs, "SIGABRT: the systemd watchdog expired") {
			t.Errorf("no error line from eddy about the watchdog:\n%s", info)
		}
		debug := c.journal(since, "debug")
		if !strings.Contains(debug, "goroutine ") {
			t.Errorf("no goroutine dump at debug priority:\n%s", tail([]byte(debug), 20))
		}
		t.Logf("journalctl -u eddy -p err after the watchdog kill:\n%s", errs)
		t.Logf("watchdog restart: NRestarts %d → %s", n0, c.prop("NRestarts"))
	})

	t.Run("sandbox: uid, capabilities, seccomp, systemd-analyze security", func(t *testing.T) {
		c.t = t
		pid := c.prop("MainPID")
		status := c.must("cat /proc/" + pid + "/status")
		uid := c.must("id -u eddy")
		fields := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(status))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
				fields[k] = strings.TrimSpace(v)
			}
		}
		if f := strings.Fields(fields["Uid"]); len(f) == 0 || f[0] != strings.TrimSpace(uid) || f[0] == "0" {
			t.Errorf("Uid %q, want eddy's %s", fields["Uid"], uid)
		}
		for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
			if fields[k] != "0000000000000000" {
				t.Errorf("%s = %s, want none", k, fields[k])
			}
		}
		if fields["Seccomp"] != "2" {
			t.Errorf("Seccomp = %s, want 2 (filter)", fields["Seccomp"])
		}
		if fields["NoNewPrivs"] != "1" {
			t.Errorf("NoNewPrivs = %s, want 1", fields["NoNewPrivs"])
		}
		out := c.must("systemd-analyze security --no-pager eddy.service")
		m := regexp.MustCompile(`Overall exposure level for eddy.service: ([0-9.]+) (\w+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no exposure level:\n%s", out)
		}
		t.Logf("systemd-analyze security eddy: %s %s", m[1], m[2])
		if score, _ := strconv.ParseFloat(m[1], 64); score > 2.0 {
			t.Errorf("exposure %s %s, want 2.0 or lower", m[1], m[2])
		}
	})

	t.Run("start with a broken file: error at err, no restart loop", func(t *testing.T) {
		c.t = t
		since := c.now()
		c.setConfig(strings.Replace(cfg, "  interval: 3s\n", "  interval: soon\n", 1))
		if out, err := c.sh("systemctl restart eddy.service"); err == nil {
			t.Errorf("systemctl restart with a broken file succeeded:\n%s", out)
		}
		c.waitFor("eddy.service failed", 30*time.Second, func() bool {
			return c.prop("ActiveState") == "failed"
		})
		// failed with result exit-code, not auto-restarted until the start
		// limit hit: RestartPreventExitStatus=78 held. (A manual restart
		// resets NRestarts to 0; each automatic restart counts.)
		if s := c.prop("ExecMainStatus"); s != "78" {
			t.Errorf("ExecMainStatus = %s, want 78 (EX_CONFIG)", s)
		}
		if r, n := c.prop("Result"), c.prop("NRestarts"); r != "exit-code" || n != "0" {
			t.Errorf("Result %s, NRestarts %s: systemd restarted eddy on a broken file", r, n)
		}
		j := c.journal(since, "err")
		if !strings.Contains(j, "interval") {
			t.Errorf("journalctl -u eddy -p err lacks the config error:\n%s", j)
		}
		t.Logf("journalctl -u eddy -p err after a start with a broken file:\n%s", j)
		c.setConfig(cfg)
		c.must("systemctl start eddy.service")
		c.waitActive(time.Minute)
	})

	t.Run("upgrade keeps state and configuration", func(t *testing.T) {
		c.t = t
		before := c.must("ls /var/lib/eddy/checkpoints")
		since := c.now()
		c.must("apt-get install -y -q /root/eddy-up.deb")
		if v := c.must("eddy version"); !strings.Contains(v, "99.0.0") {
			t.Errorf("eddy version after the upgrade: %s", v)
		}
		c.waitActive(time.Minute)
		if c.must("cat /etc/eddy/config.yaml") != cfg {
			t.Error("the upgrade changed the edited /etc/eddy/config.yaml")
		}
		j := c.journal(since, "info")
		if !strings.Contains(j, "final checkpoint completed") || !strings.Contains(j, "restoring from checkpoint") {
			t.Errorf("the upgrade did not restart eddy through a final checkpoint and a restore:\n%s", j)
		}
		t.Logf("checkpoints before the upgrade: %s", strings.Fields(before))
	})

	t.Run("remove then install keeps it enabled", func(t *testing.T) {
		c.t = t
		c.must("apt-get remove -y -q eddy")
		if s := c.prop("ActiveState"); s == "active" {
			t.Errorf("eddy still active after apt-get remove")
		}
		c.must("test -d /var/lib/eddy && test -f /etc/eddy/config.yaml")
		c.must("apt-get install -y -q /root/eddy-up.deb")
		if s := strings.TrimSpace(c.must("systemctl is-enabled eddy.service || true")); s != "enabled" {
			t.Errorf("after remove and install: is-enabled = %q, want enabled", s)
		}
	})

	t.Run("purge leaves nothing", func(t *testing.T) {
		c.t = t
		c.must("apt-get purge -y -q eddy")
		for _, p := range []string{"/var/lib/eddy", "/etc/eddy", "/etc/systemd/system/multi-user.target.wants/eddy.service",
			"/etc/systemd/system/eddy.service", "/var/lib/systemd/deb-systemd-helper-enabled/eddy.service",
			"/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/eddy.service", "/usr/bin/eddy"} {
			if out, err := c.sh("test -e " + p + " || test -L " + p); err == nil {
				t.Errorf("purge left %s %s", p, out)
			}
		}
		if out, err := c.sh("getent passwd eddy"); err == nil {
			t.Errorf("purge left the user eddy: %s", out)
		}
	})
	c.t = t
	t.Logf("tree %s, two .debs %s, containers and checks %s, total %s", tTree.Round(time.Second), tBuild.Round(time.Second),
		time.Since(tBoot).Round(time.Second), time.Since(t0).Round(time.Second))
}
