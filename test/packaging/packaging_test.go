// Package packaging tests what operators install: the .deb and .rpm built
// by `make deb rpm` (nfpm, packaging/nfpm.yaml) and the systemd unit
// packaging/eddy.service.
//
// The .deb is installed for real with dpkg on this machine when the test
// runs as root (as CI does) and eddy is not installed already; otherwise
// those tests skip and say why. systemd need not be PID 1: the maintainer
// scripts only talk to systemctl when /run/systemd/system exists.
package packaging

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

const root = "../.."

// mosquittoConf is the broker snippet the package installs (a conffile).
const mosquittoConf = "/etc/mosquitto/conf.d/eddy.conf"

var (
	buildOnce sync.Once
	distDir   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if distDir != "" {
		os.RemoveAll(distDir)
	}
	os.Exit(code)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// packages builds the .deb and .rpm once (make packages into a temporary
// dist directory) and returns their paths.
func packages(t *testing.T) (deb, rpm string) {
	t.Helper()
	buildOnce.Do(func() {
		if distDir, buildErr = os.MkdirTemp("", "eddy-dist-"); buildErr != nil {
			return
		}
		cmd := exec.Command("make", "-C", root, "packages", "DIST="+distDir)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("make packages: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	debs, _ := filepath.Glob(filepath.Join(distDir, "eddy_*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(distDir, "eddy-*.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("make packages made %v and %v, want one .deb and one .rpm", debs, rpms)
	}
	return debs[0], rpms[0]
}

// upgradeDeb builds a .deb with a higher version into its own directory.
func upgradeDeb(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	run(t, "make", "-C", root, "deb", "DIST="+dir, "PKG_VERSION="+version)
	debs, _ := filepath.Glob(filepath.Join(dir, "eddy_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("upgrade .deb: %v", debs)
	}
	return debs[0]
}

func TestPackageVersion(t *testing.T) {
	v := strings.TrimSpace(run(t, filepath.Join(root, "scripts/pkg-version.sh")))
	// Debian: starts with a digit; RPM: no '-'. Both hold for every form.
	if !regexp.MustCompile(`^[0-9][0-9A-Za-z.+~]*$`).MatchString(v) {
		t.Fatalf("package version %q is not valid for both deb and rpm", v)
	}
	t.Logf("version %s", v)
}

func TestDebMetadata(t *testing.T) {
	deb, _ := packages(t)
	info := run(t, "dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends", "Recommends")
	for _, want := range []string{"Package: eddy", "librocksdb7.8", "libjemalloc2", "Recommends: mosquitto"} {
		if !strings.Contains(info, want) {
			t.Errorf("control lacks %q:\n%s", want, info)
		}
	}
	list := run(t, "dpkg-deb", "-c", deb)
	for _, want := range []string{"./usr/bin/eddy", "./lib/systemd/system/eddy.service", "./etc/eddy/config.yaml",
		"./usr/share/doc/eddy/configuration.md", "./etc/mosquitto/conf.d/eddy.conf", "./usr/share/doc/eddy/broker.md"} {
		if !strings.Contains(list, want) {
			t.Errorf("payload lacks %s:\n%s", want, list)
		}
	}
	ctl := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, ctl)
	conffiles, err := os.ReadFile(filepath.Join(ctl, "conffiles"))
	if want := "/etc/eddy/config.yaml\n/etc/mosquitto/conf.d/eddy.conf"; err != nil || strings.TrimSpace(string(conffiles)) != want {
		t.Errorf("conffiles = %q (%v), want %q", conffiles, err, want)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		b, err := os.ReadFile(filepath.Join(ctl, s))
		if err != nil {
			t.Errorf("no %s: %v", s, err)
			continue
		}
		if strings.Contains(string(b), "systemctl") && !strings.Contains(string(b), "[ -d /run/systemd/system ]") {
			t.Errorf("%s calls systemctl without checking that systemd runs", s)
		}
		if out, err := exec.Command("sh", "-n", filepath.Join(ctl, s)).CombinedOutput(); err != nil {
			t.Errorf("%s: sh -n: %v %s", s, err, out)
		}
	}
	// dh_installsystemd's conventions: postinst enables through
	// deb-systemd-helper (online and offline), prerm never disables (a
	// removed and reinstalled eddy stays enabled), postrm purges the
	// enablement. test/systemd checks them under a real systemd.
	for s, want := range map[string]string{"postinst": "deb-systemd-helper enable", "postrm": "deb-systemd-helper purge"} {
		if b, _ := os.ReadFile(filepath.Join(ctl, s)); !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q", s, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(ctl, "prerm")); regexp.MustCompile(`(systemctl|deb-systemd-helper)( --?\S+)* disable`).Match(b) {
		t.Error("prerm disables the unit: apt remove then apt install would leave it disabled")
	}
	t.Logf("%s", info)
}

func TestRPMQueries(t *testing.T) {
	_, rpm := packages(t)
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Fatal("rpm is not installed: run `make test-deps` (apt-get install rpm)")
	}
	list := run(t, "rpm", "-qpl", rpm)
	for _, want := range []string{"/usr/bin/eddy", "/usr/lib/systemd/system/eddy.service", "/etc/eddy/config.yaml",
		"/etc/mosquitto/conf.d/eddy.conf"} {
		if !strings.Contains(list, want+"\n") {
			t.Errorf("rpm -qpl lacks %s:\n%s", want, list)
		}
	}
	if cf, want := strings.TrimSpace(run(t, "rpm", "-qp", "--configfiles", rpm)), "/etc/eddy/config.yaml\n/etc/mosquitto/conf.d/eddy.conf"; cf != want {
		t.Errorf("rpm -qp --configfiles = %q, want %q", cf, want)
	}
	// %config(noreplace): the file's flags include 'n'.
	dump := run(t, "rpm", "-qp", "--queryformat", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", rpm)
	for _, f := range []string{"/etc/eddy/config.yaml", "/etc/mosquitto/conf.d/eddy.conf"} {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(f) + ` (\S*)$`).FindStringSubmatch(dump)
		if m == nil || !strings.Contains(m[1], "c") || !strings.Contains(m[1], "n") {
			t.Errorf("%s is not %%config(noreplace) (want flags c and n):\n%s", f, dump)
		}
	}
	reqs := run(t, "rpm", "-qpR", rpm)
	for _, dep := range []string{"rocksdb", "jemalloc"} {
		if !regexp.MustCompile(`(?m)^` + dep + `\s*$`).MatchString(reqs) {
			t.Errorf("rpm requires lack %s:\n%s", dep, reqs)
		}
	}
	if rec := run(t, "rpm", "-qp", "--recommends", rpm); !strings.Contains(rec, "mosquitto") {
		t.Errorf("rpm recommends lack mosquitto: %q", rec)
	}
	scripts := run(t, "rpm", "-qp", "--scripts", rpm)
	for _, want := range []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet"} {
		if !strings.Contains(scripts, want) {
			t.Errorf("rpm lacks a %s", want)
		}
	}
	// The %systemd_post, %systemd_preun and %systemd_postun_with_restart
	// semantics.
	for _, want := range []string{"systemctl --no-reload preset eddy.service", "systemctl --no-reload disable --now eddy.service",
		"systemctl try-restart eddy.service"} {
		if !strings.Contains(scripts, want) {
			t.Errorf("rpm scriptlets lack %q:\n%s", want, scripts)
		}
	}
}

// verifyRoot is a throwaway root for systemd-analyze verify: the system's
// unit files (for the targets the unit names), /bin/kill (ExecReload) and
// a stand-in /usr/bin/eddy (ExecStart must be an executable).
func verifyRoot(t *testing.T, unit string) string {
	t.Helper()
	dir := t.TempDir()
	units := filepath.Join(dir, "usr/lib/systemd/system")
	if err := os.MkdirAll(filepath.Dir(units), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "cp", "-a", "/usr/lib/systemd/system", units)
	run(t, "cp", unit, filepath.Join(units, "eddy.service"))
	for path, body := range map[string]string{"usr/bin/eddy": "#!/bin/sh\n"} {
		p := filepath.Join(dir, path)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	run(t, "cp", "/bin/kill", filepath.Join(dir, "bin/kill"))
	return dir
}

func TestUnitVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze is not installed (Debian package systemd)")
	}
	unit := filepath.Join(root, "packaging/eddy.service")
	dir := verifyRoot(t, unit)
	cmd := exec.Command("systemd-analyze", "verify", "--man=no", "--root="+dir, "eddy.service")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("systemd-analyze verify: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
	}

	// A broken unit must be caught the same way, or the check above proves
	// nothing.
	bad := filepath.Join(t.TempDir(), "eddy.service")
	b, _ := os.ReadFile(unit)
	os.WriteFile(bad, bytes.Replace(b, []byte("ProtectSystem=strict"), []byte("ProtectSystem=strictly\nNoSuchKey=1"), 1), 0o644)
	dir = verifyRoot(t, bad)
	cmd = exec.Command("systemd-analyze", "verify", "--man=no", "--root="+dir, "eddy.service")
	stderr.Reset()
	cmd.Stderr = &stderr
	cmd.Run()
	if !strings.Contains(stderr.String(), "NoSuchKey") {
		t.Errorf("systemd-analyze verify did not report a broken unit: %q", stderr.String())
	}
}

// TestUnitSecurity records the exposure score; "OK" or better is the aim.
func TestUnitSecurity(t *testing.T) {
	out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager",
		filepath.Join(root, "packaging/eddy.service")).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for eddy.service: ([0-9.]+) (\w+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security --offline=true: exposure %s %s", m[1], m[2])
	switch string(m[2]) {
	case "PERFECT", "SAFE", "OK":
	default:
		t.Errorf("exposure %.1f %s, want OK or better:\n%s", score, m[2], out)
	}
}

// dpkgStatus is dpkg's abbreviated status of pkg ("ii", "rc", …), or ""
// when dpkg knows nothing of it.
func dpkgStatus(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev}", pkg).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func requireRootDpkg(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("installing the .deb needs root (dpkg -i); CI runs as root — skipped")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("no dpkg on this machine — skipped")
	}
	if s := dpkgStatus("eddy"); s != "" && !strings.HasPrefix(s, "un") {
		t.Skipf("package eddy is already on this machine (%s); not touching it — skipped", s)
	}
	if _, err := user.Lookup("eddy"); err == nil {
		t.Skip("a user eddy exists that this test did not create; not touching it — skipped")
	}
}

func owner(t *testing.T, path string) (usr, grp string, mode os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	u, _ := user.LookupId(strconv.Itoa(int(sys.Uid)))
	g, _ := user.LookupGroupId(strconv.Itoa(int(sys.Gid)))
	if u != nil {
		usr = u.Username
	}
	if g != nil {
		grp = g.Name
	}
	return usr, grp, st.Mode()
}

// TestDebInstallUpgradePurge installs the .deb with dpkg, checks files,
// owner, user and conffile, reinstalls and upgrades it over an edited
// configuration and some state (both kept), removes it (both kept) and
// purges it (state and user gone).
func TestDebInstallUpgradePurge(t *testing.T) {
	requireRootDpkg(t)
	deb, _ := packages(t)
	t.Cleanup(func() {
		if s := dpkgStatus("eddy"); s != "" && !strings.HasPrefix(s, "un") {
			exec.Command("dpkg", "--purge", "eddy").Run()
		}
	})
	dpkg := func(args ...string) string {
		t.Helper()
		return run(t, "dpkg", append([]string{"--force-confdef", "--force-confold"}, args...)...)
	}

	dpkg("-i", deb)
	for _, f := range []string{"/usr/bin/eddy", "/lib/systemd/system/eddy.service", "/etc/eddy/config.yaml"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("after dpkg -i: %v", err)
		}
	}
	if out := run(t, "/usr/bin/eddy", "version"); !strings.HasPrefix(out, "eddy ") {
		t.Errorf("eddy version: %q", out)
	}
	u, err := user.Lookup("eddy")
	if err != nil {
		t.Fatalf("user eddy was not created: %v", err)
	}
	if uid, _ := strconv.Atoi(u.Uid); uid >= 1000 || uid == 0 {
		t.Errorf("user eddy has uid %d, want a system uid", uid)
	}
	if pw := run(t, "getent", "passwd", "eddy"); !strings.Contains(pw, "nologin") || !strings.Contains(pw, ":/var/lib/eddy:") {
		t.Errorf("passwd entry %q: want home /var/lib/eddy and a nologin shell", pw)
	}
	if usr, grp, mode := owner(t, "/var/lib/eddy"); usr != "eddy" || grp != "eddy" || mode.Perm() != 0o750 || !mode.IsDir() {
		t.Errorf("/var/lib/eddy is %s:%s %v, want eddy:eddy drwxr-x---", usr, grp, mode)
	}
	if usr, grp, mode := owner(t, "/etc/eddy/config.yaml"); usr != "root" || grp != "eddy" || mode.Perm() != 0o640 {
		t.Errorf("/etc/eddy/config.yaml is %s:%s %v, want root:eddy -rw-r-----", usr, grp, mode)
	}
	cf := run(t, "dpkg-query", "-W", "-f=${Conffiles}", "eddy")
	for _, want := range []string{"/etc/eddy/config.yaml", mosquittoConf} {
		if !strings.Contains(cf, want) {
			t.Errorf("dpkg-query Conffiles = %q, want %s", cf, want)
		}
	}
	if usr, grp, mode := owner(t, mosquittoConf); usr != "root" || grp != "root" || mode.Perm() != 0o644 {
		t.Errorf("%s is %s:%s %v, want root:root -rw-r--r-- (mosquitto reads it as its own user)", mosquittoConf, usr, grp, mode)
	}
	// The installed unit verifies against the installed binary.
	var stderr bytes.Buffer
	cmd := exec.Command("systemd-analyze", "verify", "--man=no", "/lib/systemd/system/eddy.service")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Errorf("systemd-analyze verify of the installed unit: %v %s", err, stderr.String())
	}
	// The packaged configuration is valid as shipped.
	if out, err := exec.Command("/usr/bin/eddy", "validate", "-c", "/etc/eddy/config.yaml").CombinedOutput(); err != nil {
		t.Errorf("eddy validate /etc/eddy/config.yaml: %v\n%s", err, out)
	}

	// Edit the configuration, leave some state.
	cfg, _ := os.ReadFile("/etc/eddy/config.yaml")
	edited := bytes.Replace(cfg, []byte("appliance_id: appliance-1"), []byte("appliance_id: edited-by-test"), 1)
	if bytes.Equal(cfg, edited) {
		t.Fatal("could not edit appliance_id in the packaged configuration")
	}
	if err := os.WriteFile("/etc/eddy/config.yaml", edited, 0o640); err != nil {
		t.Fatal(err)
	}
	// The operator sizes the broker's queue for their outage.
	snippet, _ := os.ReadFile(mosquittoConf)
	sized := bytes.Replace(snippet, []byte("\nmax_queued_messages 1000000\n"), []byte("\nmax_queued_messages 3600000\n"), 1)
	if bytes.Equal(snippet, sized) {
		t.Fatalf("could not edit max_queued_messages in %s", mosquittoConf)
	}
	if err := os.WriteFile(mosquittoConf, sized, 0o644); err != nil {
		t.Fatal(err)
	}
	state := "/var/lib/eddy/checkpoints/chk-7/_metadata"
	os.MkdirAll(filepath.Dir(state), 0o750)
	if err := os.WriteFile(state, []byte("state"), 0o640); err != nil {
		t.Fatal(err)
	}
	kept := func(when string) {
		t.Helper()
		if b, _ := os.ReadFile("/etc/eddy/config.yaml"); !bytes.Equal(b, edited) {
			t.Errorf("%s: the edited /etc/eddy/config.yaml was not kept", when)
		}
		if b, _ := os.ReadFile(mosquittoConf); !bytes.Equal(b, sized) {
			t.Errorf("%s: the edited %s was not kept", when, mosquittoConf)
		}
		if _, err := os.Stat(state); err != nil {
			t.Errorf("%s: state under /var/lib/eddy was not kept: %v", when, err)
		}
		if _, err := user.Lookup("eddy"); err != nil {
			t.Errorf("%s: user eddy is gone", when)
		}
	}

	dpkg("-i", deb) // reinstall
	kept("reinstall")
	if usr, _, _ := owner(t, "/var/lib/eddy"); usr != "eddy" {
		t.Errorf("reinstall: /var/lib/eddy owned by %s", usr)
	}

	v := strings.TrimSpace(run(t, "dpkg-query", "-W", "-f=${Version}", "eddy"))
	up := upgradeDeb(t, "99.0.0")
	dpkg("-i", up)
	kept("upgrade")
	if v2 := strings.TrimSpace(run(t, "dpkg-query", "-W", "-f=${Version}", "eddy")); v2 != "99.0.0-1" {
		t.Errorf("after the upgrade from %s the version is %s, want 99.0.0-1", v, v2)
	}
	if out := run(t, "/usr/bin/eddy", "version"); !strings.Contains(out, "99.0.0") {
		t.Errorf("upgraded binary says %q", out)
	}

	dpkg("-r", "eddy")
	if _, err := os.Stat("/usr/bin/eddy"); err == nil {
		t.Error("dpkg -r left /usr/bin/eddy")
	}
	kept("remove")

	dpkg("--purge", "eddy")
	for _, gone := range []string{"/var/lib/eddy", "/etc/eddy/config.yaml", "/lib/systemd/system/eddy.service", mosquittoConf} {
		if _, err := os.Stat(gone); err == nil {
			t.Errorf("dpkg --purge left %s", gone)
		}
	}
	if _, err := user.Lookup("eddy"); err == nil {
		t.Error("dpkg --purge left the user eddy")
	}
	if _, err := user.LookupGroup("eddy"); err == nil {
		t.Error("dpkg --purge left the group eddy")
	}
}
