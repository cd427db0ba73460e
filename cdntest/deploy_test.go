package cdntest

// Docker cannot run here, so these tests read the Docker, compose and
// monitoring files the way a linter would, and check them against the code
// and the docs: the ports the servers listen on, the configuration keys, the
// metric names, the nginx configuration the CDN test runs.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/server"
)

func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dockerInstruction is one Dockerfile instruction, continuation lines joined.
type dockerInstruction struct {
	cmd  string // upper case
	args string
	line int
}

func parseDockerfile(t *testing.T) []dockerInstruction {
	t.Helper()
	var out []dockerInstruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(readRepoFile(t, "Dockerfile"), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue // comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if s, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstruction{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatal("Dockerfile ends inside a continued line")
	}
	return out
}

// defaultPorts lists the ports Headwater listens on by default: the
// address keys of docs/configuration.md, plus the DefaultAddress of every
// ingest package (listeners whose keys are not documented yet). SRT is UDP.
func defaultPorts(t *testing.T) map[string]string {
	t.Helper()
	ports := map[string]string{} // "8890/udp" -> where it comes from
	row := regexp.MustCompile("(?m)^\\| `([a-z_.]+\\.address)` \\| address \\| `\"?(?:[^`\"]*):([0-9]+)\"?` \\|")
	for _, m := range row.FindAllStringSubmatch(readRepoFile(t, "docs/configuration.md"), -1) {
		port := m[2] + "/tcp"
		if strings.HasPrefix(m[1], "srt.") {
			port = m[2] + "/udp"
		}
		ports[port] = "docs/configuration.md " + m[1]
	}
	if len(ports) < 3 {
		t.Fatalf("found only %v in docs/configuration.md's key tables", ports)
	}
	def := regexp.MustCompile(`DefaultAddress\s*=\s*":([0-9]+)"`)
	dirs, _ := filepath.Glob(filepath.Join(repoRoot, "ingest", "*", "config.go"))
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := def.FindSubmatch(b); m != nil {
			proto := "tcp"
			if filepath.Base(filepath.Dir(f)) == "srt" {
				proto = "udp"
			}
			ports[string(m[1])+"/"+proto] = f
		}
	}
	return ports
}

func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t)
	var froms, exposes, users, healthchecks, entrypoints, cmds, runs, copies, workdirs []dockerInstruction
	args := map[string]bool{}
	argDefaults := map[string]string{} // ARG NAME=default, before the first FROM
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			froms = append(froms, in)
		case "EXPOSE":
			exposes = append(exposes, in)
		case "USER":
			users = append(users, in)
		case "HEALTHCHECK":
			healthchecks = append(healthchecks, in)
		case "ENTRYPOINT":
			entrypoints = append(entrypoints, in)
		case "CMD":
			cmds = append(cmds, in)
		case "RUN":
			runs = append(runs, in)
		case "COPY":
			copies = append(copies, in)
		case "ARG":
			name, def, _ := strings.Cut(in.args, "=")
			args[name] = true
			if len(froms) == 0 {
				argDefaults[name] = strings.Trim(def, `"`)
			}
		case "WORKDIR":
			workdirs = append(workdirs, in)
		}
	}

	t.Run("stages", func(t *testing.T) {
		if len(froms) != 2 {
			t.Fatalf("want a build and a runtime stage, got %d FROM", len(froms))
		}
		// The base images are build arguments (scripts/container-test.sh
		// gives locally made ones) whose defaults are the upstream images.
		if froms[0].args != "${BUILD_IMAGE} AS build" || argDefaults["BUILD_IMAGE"] != "golang:${GO_VERSION}-bookworm" {
			t.Errorf("build stage %q (BUILD_IMAGE=%q), want ${BUILD_IMAGE} AS build with golang:${GO_VERSION}-bookworm by default",
				froms[0].args, argDefaults["BUILD_IMAGE"])
		}
		if argDefaults["GO_VERSION"] != "1.26" {
			t.Errorf("ARG GO_VERSION=%q before the first FROM, want 1.26 (go.mod)", argDefaults["GO_VERSION"])
		}
		if froms[1].args != "${RUNTIME_IMAGE}" || argDefaults["RUNTIME_IMAGE"] != "debian:bookworm-slim" {
			t.Errorf("runtime stage %q (RUNTIME_IMAGE=%q), want ${RUNTIME_IMAGE} with debian:bookworm-slim by default",
				froms[1].args, argDefaults["RUNTIME_IMAGE"])
		}
		// scripts/container-base.sh makes the local ones from Debian's
		// bookworm, the same release as the defaults.
		base := readRepoFile(t, "scripts/container-base.sh")
		for _, want := range []string{"mmdebstrap", "bookworm", "localhost/headwater-base/golang:${gover}-bookworm", "localhost/headwater-base/debian:bookworm-slim"} {
			if !strings.Contains(base, want) {
				t.Errorf("scripts/container-base.sh lacks %q", want)
			}
		}
		if !args["VERSION"] {
			t.Error("no VERSION build argument")
		}
		build := ""
		for _, r := range runs {
			if strings.Contains(r.args, "go build") {
				build = r.args
			}
		}
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w -X main.version=${VERSION}"`} {
			if !strings.Contains(build, want) {
				t.Errorf("go build command lacks %s: %s", want, build)
			}
		}
		apt := ""
		for _, r := range runs {
			if strings.Contains(r.args, "apt-get install") {
				apt = r.args
			}
		}
		for _, want := range []string{"--no-install-recommends", "ffmpeg", "ca-certificates", "rm -rf /var/lib/apt/lists/*"} {
			if !strings.Contains(apt, want) {
				t.Errorf("apt-get line lacks %s: %s", want, apt)
			}
		}
	})

	t.Run("every default port is exposed", func(t *testing.T) {
		exposed := map[string]bool{}
		for _, e := range exposes {
			for _, p := range strings.Fields(e.args) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				exposed[p] = true
			}
		}
		for port, from := range defaultPorts(t) {
			if !exposed[port] {
				t.Errorf("port %s (%s) is not in EXPOSE", port, from)
			}
		}
		for _, p := range []string{"1935/tcp", "8080/tcp", "9090/tcp", "8890/udp", "8554/tcp"} {
			if !exposed[p] {
				t.Errorf("EXPOSE lacks %s", p)
			}
		}
	})

	t.Run("non-root user", func(t *testing.T) {
		if len(users) == 0 {
			t.Fatal("no USER: the container would run as root")
		}
		last := users[len(users)-1]
		if last.line < froms[len(froms)-1].line {
			t.Fatal("USER is not set in the runtime stage")
		}
		uid, _, _ := strings.Cut(last.args, ":")
		if n, err := strconv.Atoi(uid); err != nil || n != 10001 {
			t.Errorf("USER %q, want uid 10001", last.args)
		}
	})

	t.Run("health check, entrypoint and command", func(t *testing.T) {
		if len(healthchecks) != 1 || !strings.Contains(healthchecks[0].args, `CMD ["headwater-healthcheck"]`) {
			t.Fatalf("HEALTHCHECK %+v", healthchecks)
		}
		installed := false
		for _, c := range copies {
			if strings.Contains(c.args, "deploy/docker/healthcheck.sh /usr/local/bin/headwater-healthcheck") &&
				strings.Contains(c.args, "--chmod=0755") {
				installed = true
			}
		}
		if !installed {
			t.Error("the health check script is not copied to /usr/local/bin/headwater-healthcheck (mode 0755)")
		}
		// The transcoder preloads its fork server library only from a
		// directory owned by the user it runs as, mode 0700, which it
		// cannot tighten on a read-only root: the directory is made so
		// before the library is copied into it.
		forkLib := false
		for _, c := range copies {
			if strings.Contains(c.args, "/out/cache/headwater/ /var/cache/headwater/") &&
				strings.Contains(c.args, "--chown=10001:10001") {
				forkLib = true
			}
		}
		if !forkLib {
			t.Error("the fork server library is not copied into /var/cache/headwater/ owned by 10001:10001")
		}
		dirs := ""
		for _, r := range runs {
			if r.line > froms[len(froms)-1].line {
				dirs += r.args + "\n"
			}
		}
		for _, want := range []string{
			"install -d -o 10001 -g 10001 -m 0700 /var/cache/headwater",
			"install -d -o 10001 -g 10001 -m 0750 /var/lib/headwater",
		} {
			if !strings.Contains(dirs, want) {
				t.Errorf("the runtime stage does not run %q", want)
			}
		}
		// The data directory is the working directory (relative paths such
		// as record.dir land on its volume), as docs/operations.md says.
		if len(workdirs) == 0 || workdirs[len(workdirs)-1].args != "/var/lib/headwater" {
			t.Errorf("WORKDIR %+v, want /var/lib/headwater", workdirs)
		}
		ops := readRepoFile(t, "docs/operations.md")
		for _, want := range []string{"--read-only", "/var/lib/headwater", "--tmpfs /tmp"} {
			if !strings.Contains(ops, want) {
				t.Errorf("docs/operations.md does not show %s", want)
			}
		}
		if len(entrypoints) != 1 || entrypoints[0].args != `["headwater"]` {
			t.Errorf("ENTRYPOINT %+v, want [\"headwater\"]", entrypoints)
		}
		if len(cmds) != 1 || cmds[0].args != `["serve"]` {
			t.Errorf("CMD %+v, want [\"serve\"]", cmds)
		}
	})

	t.Run("build context", func(t *testing.T) {
		// Each file copied from the context exists and is let through by
		// .dockerignore, which excludes deploy/ except what is copied.
		ignore := strings.Split(readRepoFile(t, ".dockerignore"), "\n")
		for _, c := range copies {
			if strings.Contains(c.args, "--from=") {
				continue
			}
			fields := strings.Fields(c.args)
			for _, src := range fields[:len(fields)-1] {
				if strings.HasPrefix(src, "--") || src == "." {
					continue
				}
				if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
					t.Errorf("COPY %s: %v", src, err)
				}
				if strings.HasPrefix(src, "deploy/") && !slices.Contains(ignore, "!"+src) {
					t.Errorf(".dockerignore excludes deploy/ but does not let %s through", src)
				}
			}
		}
		for _, must := range []string{".git", "docs", "deploy", "**/*.test"} {
			if !slices.Contains(ignore, must) {
				t.Errorf(".dockerignore does not exclude %s", must)
			}
		}
		for _, keep := range []string{"go.mod", "go.sum", "main.go", "*.go", "config", "server"} {
			if slices.Contains(ignore, keep) {
				t.Errorf(".dockerignore excludes %s, which the build needs", keep)
			}
		}
	})
}

// TestHealthcheckScript runs the image's health check against a real
// origin, since bash is all it needs.
func TestHealthcheckScript(t *testing.T) {
	testpeer.RequireBinary(t, "the health check is a bash script", "bash")
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(repoRoot, "deploy/docker/healthcheck.sh")
	if st, err := os.Stat(script); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("%s missing or not executable (%v)", script, err)
	}
	cfg := loopbackConfig()
	cfg.RTMP.Address = ""
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	closed := testpeer.FreeAddr(t)

	_, originPort, _ := net.SplitHostPort(srv.OriginAddr().String())
	for _, c := range []struct {
		name string
		arg  string
		env  string
		ok   bool
	}{
		{"origin", srv.OriginAddr().String(), "", true},
		{"admin", srv.AdminAddr().String(), "", true},
		{"HEADWATER_ORIGIN_ADDRESS with a wildcard host", "", "HEADWATER_ORIGIN_ADDRESS=:" + originPort, true},
		{"HEADWATER_ORIGIN_ADDRESS with a host", "", "HEADWATER_ORIGIN_ADDRESS=" + srv.OriginAddr().String(), true},
		{"503", strings.TrimPrefix(failing.URL, "http://"), "", false},
		{"nothing listening", closed, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bash, script)
			if c.arg != "" {
				cmd.Args = append(cmd.Args, c.arg)
			}
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
			if c.env != "" {
				cmd.Env = append(cmd.Env, c.env)
			}
			out, err := cmd.CombinedOutput()
			if (err == nil) != c.ok {
				t.Errorf("healthcheck %s %s: err %v, want ok=%v\n%s", c.arg, c.env, err, c.ok, out)
			}
		})
	}
}

// composeFile is the part of docker-compose.yml the tests look at.
type composeFile struct {
	Name     string
	Services map[string]composeService
	Volumes  map[string]any
}

type composeService struct {
	Image         string
	Build         any
	Entrypoint    []string
	Command       []string
	User          string
	Volumes       []string
	Ports         []string
	Environment   map[string]string
	DependsOn     yaml.Node `yaml:"depends_on"`
	Profiles      []string
	ContainerName string `yaml:"container_name"`
	Healthcheck   *struct {
		Test    healthTest
		Disable bool
	}
}

// healthTest is a compose healthcheck's test: a list (["CMD", ...],
// ["CMD-SHELL", "..."]) or a string, which compose runs as CMD-SHELL.
type healthTest []string

func (h *healthTest) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*h = healthTest{"CMD-SHELL", n.Value}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*h = l
	return nil
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	dec := yaml.NewDecoder(strings.NewReader(readRepoFile(t, "docker-compose.yml")))
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// mounts maps a service's container paths to repository files.
func mounts(t *testing.T, volumes []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if !strings.HasPrefix(parts[0], "./") {
			continue // named volume
		}
		if len(parts) < 2 {
			t.Fatalf("volume %q", v)
		}
		host := filepath.Join(repoRoot, parts[0])
		if _, err := os.Stat(host); err != nil {
			t.Errorf("volume %q: %v", v, err)
		}
		out[parts[1]] = parts[0][2:]
	}
	return out
}

func TestCompose(t *testing.T) {
	c := loadCompose(t)
	for _, s := range []string{"headwater", "cdn", "cdn-exporter", "prometheus", "grafana"} {
		if _, ok := c.Services[s]; !ok {
			t.Errorf("docker-compose.yml has no %s service", s)
		}
	}
	if t.Failed() {
		return
	}
	hw := c.Services["headwater"]
	hwMounts := mounts(t, hw.Volumes)

	t.Run("headwater", func(t *testing.T) {
		if hw.Build == nil {
			t.Error("headwater is not built from the Dockerfile")
		}
		// The configuration named on the command line is mounted, and it
		// loads, with the compose environment, as "serve" would load it.
		i := slices.Index(hw.Command, "--config")
		if len(hw.Command) == 0 || hw.Command[0] != "serve" || i < 0 || i+1 >= len(hw.Command) {
			t.Fatalf("command %q, want serve --config FILE", hw.Command)
		}
		file, ok := hwMounts[hw.Command[i+1]]
		if !ok {
			t.Fatalf("--config %s is not a mounted file", hw.Command[i+1])
		}
		var env []string
		for k, v := range hw.Environment {
			env = append(env, k+"="+v)
		}
		cfg, err := config.Load(filepath.Join(repoRoot, file), env)
		if err != nil {
			t.Fatalf("%s with the compose environment: %v", file, err)
		}
		// Every exposed port of the image is published.
		published := map[string]bool{}
		for _, p := range hw.Ports {
			parts := strings.Split(p, ":")
			target := parts[len(parts)-1]
			if !strings.Contains(target, "/") {
				target += "/tcp"
			}
			published[target] = true
		}
		for port, from := range defaultPorts(t) {
			if !published[port] {
				t.Errorf("headwater does not publish %s (%s)", port, from)
			}
		}
		for _, addr := range []string{cfg.RTMP.Address, cfg.Origin.Address, cfg.Admin.Address} {
			_, port, _ := net.SplitHostPort(addr)
			if !published[port+"/tcp"] {
				t.Errorf("the configuration listens on %s, which is not published", addr)
			}
		}
		// nginx and Prometheus find it by service name and port.
		if _, port, _ := net.SplitHostPort(cfg.Origin.Address); !strings.Contains(readRepoFile(t, "deploy/nginx/cdn.conf"), "server headwater:"+port+";") {
			t.Errorf("deploy/nginx/cdn.conf does not proxy to headwater:%s", port)
		}
		if _, port, _ := net.SplitHostPort(cfg.Admin.Address); !strings.Contains(readRepoFile(t, "deploy/prometheus/prometheus.yml"), `"headwater:`+port+`"`) {
			t.Errorf("deploy/prometheus/prometheus.yml does not scrape headwater:%s", port)
		}
	})

	t.Run("cdn", func(t *testing.T) {
		m := mounts(t, c.Services["cdn"].Volumes)
		if m["/etc/nginx/nginx.conf"] != "deploy/nginx/cdn.conf" {
			t.Errorf("cdn mounts %v, want deploy/nginx/cdn.conf as /etc/nginx/nginx.conf", m)
		}
		conf := readRepoFile(t, "deploy/nginx/cdn.conf")
		inc := regexp.MustCompile(`include (\S+);`).FindStringSubmatch(conf)
		if inc == nil || m[inc[1]] != "deploy/nginx/cdn-cache.conf" {
			t.Errorf("cdn.conf includes %v, which is not deploy/nginx/cdn-cache.conf in the container (%v)", inc, m)
		}
		if !slices.Contains(c.Services["cdn"].Ports, "8081:8081") || !strings.Contains(conf, "listen 8081;") {
			t.Error("the cache listens on 8081 and publishes it")
		}
		exp := strings.Join(c.Services["cdn-exporter"].Command, " ")
		if !strings.Contains(exp, "--nginx.scrape-uri=http://cdn:8082/stub_status") ||
			!strings.Contains(conf, "listen 8082;") || !strings.Contains(conf, "location = /stub_status") {
			t.Errorf("cdn-exporter %q does not match cdn.conf's stub_status server", exp)
		}
		if !strings.Contains(readRepoFile(t, "deploy/prometheus/prometheus.yml"), `"cdn-exporter:9113"`) {
			t.Error("Prometheus does not scrape cdn-exporter:9113")
		}
	})

	t.Run("prometheus and grafana", func(t *testing.T) {
		pm := mounts(t, c.Services["prometheus"].Volumes)
		if pm["/etc/prometheus"] != "deploy/prometheus" {
			t.Errorf("prometheus mounts %v", pm)
		}
		if !slices.Contains(c.Services["prometheus"].Command, "--config.file=/etc/prometheus/prometheus.yml") {
			t.Errorf("prometheus command %q", c.Services["prometheus"].Command)
		}
		gm := mounts(t, c.Services["grafana"].Volumes)
		if gm["/etc/grafana/provisioning"] != "deploy/grafana/provisioning" {
			t.Errorf("grafana mounts %v", gm)
		}
		var providers struct {
			Providers []struct {
				Options struct{ Path string }
			}
		}
		unmarshalYAML(t, "deploy/grafana/provisioning/dashboards/headwater.yml", &providers)
		if len(providers.Providers) != 1 || gm[providers.Providers[0].Options.Path] != "docs/grafana" {
			t.Errorf("the dashboard provider reads %+v, where docs/grafana is not mounted (%v)", providers, gm)
		}
		var ds struct {
			Datasources []struct{ UID, URL, Type string }
		}
		unmarshalYAML(t, "deploy/grafana/provisioning/datasources/prometheus.yml", &ds)
		if len(ds.Datasources) != 1 || ds.Datasources[0].URL != "http://prometheus:9090" || ds.Datasources[0].UID != "prometheus" {
			t.Errorf("datasources %+v", ds)
		}
	})
}

// defaultServices are what "docker compose up" runs (no profile); the
// cluster profile adds clusterServices beside them.
var (
	defaultServices = []string{"headwater", "cdn", "cdn-exporter", "prometheus", "grafana"}
	clusterServices = []string{"nats", "cluster-secret", "node-a", "node-b", "worker", "cdn-cluster"}
	clusterNodes    = []string{"node-a", "node-b"}
)

// dependsOn maps the services s depends on to the condition it waits for
// (service_started for the list form).
func dependsOn(t *testing.T, name string, s composeService) map[string]string {
	t.Helper()
	out := map[string]string{}
	switch n := s.DependsOn; n.Kind {
	case 0:
	case yaml.SequenceNode:
		var list []string
		if err := n.Decode(&list); err != nil {
			t.Fatalf("%s depends_on: %v", name, err)
		}
		for _, d := range list {
			out[d] = "service_started"
		}
	case yaml.MappingNode:
		var m map[string]struct{ Condition string }
		if err := n.Decode(&m); err != nil {
			t.Fatalf("%s depends_on: %v", name, err)
		}
		for d, c := range m {
			out[d] = cmp.Or(c.Condition, "service_started")
		}
	default:
		t.Fatalf("%s depends_on: unexpected YAML kind %v", name, n.Kind)
	}
	return out
}

// namedVolumes maps a service's named volumes to their container paths.
func namedVolumes(volumes []string) map[string]string {
	out := map[string]string{}
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || strings.HasPrefix(parts[0], ".") || strings.HasPrefix(parts[0], "/") {
			continue
		}
		out[parts[0]] = parts[1]
	}
	return out
}

// publishedPort splits a compose port ("127.0.0.1:8180:8080", "8891:8890/udp")
// into the host side ("8180/tcp") and the container side ("8080/tcp").
func publishedPort(t *testing.T, p string) (host, container string) {
	t.Helper()
	proto := "tcp"
	if before, after, ok := strings.Cut(p, "/"); ok {
		p, proto = before, after
	}
	parts := strings.Split(p, ":")
	if len(parts) < 2 {
		t.Errorf("port %q publishes no fixed host port", p)
		return "", ""
	}
	return parts[len(parts)-2] + "/" + proto, parts[len(parts)-1] + "/" + proto
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return port
}

// loadServiceConfig loads the configuration file a Headwater service names
// with --config (mounted from the repository), with the service's
// environment and extra variables, through the real config package: an
// unknown key or an invalid value fails.
func loadServiceConfig(t *testing.T, name string, s composeService, extraEnv ...string) (*config.Config, string) {
	t.Helper()
	i := slices.Index(s.Command, "--config")
	if i < 0 || i+1 >= len(s.Command) {
		t.Fatalf("%s: command %q has no --config FILE", name, s.Command)
	}
	file, ok := mounts(t, s.Volumes)[s.Command[i+1]]
	if !ok {
		t.Fatalf("%s: --config %s is not a file mounted from the repository", name, s.Command[i+1])
	}
	env := slices.Clone(extraEnv)
	for k, v := range s.Environment {
		env = append(env, k+"="+v)
	}
	cfg, err := config.Load(filepath.Join(repoRoot, file), env)
	if err != nil {
		t.Fatalf("%s: %s with the compose environment: %v", name, file, err)
	}
	return cfg, file
}

// TestComposeClusterProfile checks the cluster profile of docker-compose.yml
// (docker compose --profile cluster up --scale worker=3): NATS, two serve
// nodes that both ingest, scalable workers, an nginx cache in front of both
// origins, a generated cluster secret, Prometheus finding every node and
// worker. The default profile stays the single box.
func TestComposeClusterProfile(t *testing.T) {
	c := loadCompose(t)
	for _, s := range append(slices.Clone(defaultServices), clusterServices...) {
		if _, ok := c.Services[s]; !ok {
			t.Fatalf("docker-compose.yml has no %s service", s)
		}
	}

	t.Run("profiles", func(t *testing.T) {
		// "docker compose up" with no profile runs exactly the single box.
		for name, s := range c.Services {
			switch {
			case slices.Contains(defaultServices, name):
				if len(s.Profiles) != 0 {
					t.Errorf("%s has profiles %q: the default docker compose up would not run it", name, s.Profiles)
				}
				for d := range dependsOn(t, name, s) {
					if !slices.Contains(defaultServices, d) {
						t.Errorf("default service %s depends on %s, which runs only with a profile", name, d)
					}
				}
			case slices.Contains(clusterServices, name):
				if !slices.Equal(s.Profiles, []string{"cluster"}) {
					t.Errorf("%s: profiles %q, want [cluster]", name, s.Profiles)
				}
			default:
				if len(s.Profiles) == 0 {
					t.Errorf("%s has no profile: it would change the default docker compose up", name)
				}
			}
			for v := range namedVolumes(s.Volumes) {
				if _, ok := c.Volumes[v]; !ok {
					t.Errorf("%s mounts volume %s, which is not declared", name, v)
				}
			}
		}
	})

	t.Run("host ports", func(t *testing.T) {
		// Compose starts the default services with the profile's: no host
		// port may be published twice.
		used := map[string]string{}
		for name, s := range c.Services {
			for _, p := range s.Ports {
				host, _ := publishedPort(t, p)
				if other, ok := used[host]; ok {
					t.Errorf("host port %s published by %s and %s", host, other, name)
				}
				used[host] = name
			}
		}
	})

	// NATS: the official image with JetStream, the same minor version as
	// the nats-server the embedded mode and the tests use.
	nats := c.Services["nats"]
	natsPort := ""
	t.Run("nats", func(t *testing.T) {
		gomod := readRepoFile(t, "go.mod")
		m := regexp.MustCompile(`github.com/nats-io/nats-server/v2 v(\d+\.\d+)\.`).FindStringSubmatch(gomod)
		if m == nil {
			t.Fatal("go.mod has no nats-server/v2")
		}
		if !strings.HasPrefix(nats.Image, "nats:"+m[1]+"-") && nats.Image != "nats:"+m[1] {
			t.Errorf("nats image %q, want the official nats:%s image (go.mod's nats-server)", nats.Image, m[1])
		}
		if !slices.Contains(nats.Command, "-js") {
			t.Errorf("nats command %q does not enable JetStream (-js)", nats.Command)
		}
		i := slices.Index(nats.Command, "--config")
		if i < 0 || i+1 >= len(nats.Command) {
			t.Fatalf("nats command %q names no --config", nats.Command)
		}
		file, ok := mounts(t, nats.Volumes)[nats.Command[i+1]]
		if !ok || !strings.HasPrefix(file, "deploy/cluster/") {
			t.Fatalf("nats --config %s is not a file of deploy/cluster mounted in the container (%v)", nats.Command[i+1], nats.Volumes)
		}
		// Parsed by the nats-server the embedded mode uses: a key it does
		// not know, or a bad size, fails here.
		o, err := natsserver.ProcessConfigFile(filepath.Join(repoRoot, file))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		natsPort = strconv.Itoa(o.Port)
		if !o.JetStream || o.HTTPPort == 0 || o.MaxPayload < 1<<20 {
			t.Errorf("%s: jetstream %v, http_port %d, max_payload %d: want JetStream, monitoring and at least NATS's 1 MB", file, o.JetStream, o.HTTPPort, o.MaxPayload)
		}
		stored := false
		for _, dir := range namedVolumes(nats.Volumes) {
			stored = stored || strings.HasPrefix(o.StoreDir, dir+"/")
		}
		if !stored {
			t.Errorf("JetStream's store_dir %s is not on a named volume (%v)", o.StoreDir, nats.Volumes)
		}
		if nats.Healthcheck == nil || !strings.Contains(strings.Join(nats.Healthcheck.Test, " "), "http://127.0.0.1:"+strconv.Itoa(o.HTTPPort)+"/healthz") {
			t.Errorf("nats healthcheck %+v does not ask the monitoring port's /healthz", nats.Healthcheck)
		}
		for _, p := range nats.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("nats publishes %s beyond 127.0.0.1 (no authentication)", p)
			}
		}
	})
	if natsPort == "" {
		return
	}
	natsURL := "nats://nats:" + natsPort

	// The cluster secret: generated into a volume by the cluster-secret
	// service, never a file of the repository.
	gen := c.Services["cluster-secret"]
	genScript := strings.Join(append(slices.Clone(gen.Entrypoint), gen.Command...), " ")
	t.Run("cluster secret", func(t *testing.T) {
		if gen.Image != c.Services["headwater"].Image || gen.Build == nil {
			t.Errorf("cluster-secret runs %q (build %v), want the headwater image", gen.Image, gen.Build)
		}
		for _, want := range []string{"headwater token secret", "chown 10001:10001", "chmod 0400", "umask 077"} {
			if !strings.Contains(genScript, want) {
				t.Errorf("cluster-secret's script lacks %q:\n%s", want, genScript)
			}
		}
		if len(namedVolumes(gen.Volumes)) != 1 || len(mounts(t, gen.Volumes)) != 0 {
			t.Errorf("cluster-secret mounts %q, want one named volume only", gen.Volumes)
		}
	})
	secret := filepath.Join(t.TempDir(), "cluster-secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	originOf := map[string]string{} // node -> origin port
	adminOf := map[string]string{}
	t.Run("nodes", func(t *testing.T) {
		ids := map[string]string{}
		secretFiles := map[string]bool{}
		for _, name := range clusterNodes {
			s := c.Services[name]
			if s.Image != c.Services["headwater"].Image || s.Build == nil {
				t.Errorf("%s runs %q (build %v), want the headwater image built here", name, s.Image, s.Build)
			}
			if len(s.Command) == 0 || s.Command[0] != "serve" {
				t.Errorf("%s: command %q, want serve", name, s.Command)
			}
			// The file's cluster.secret_file must exist only in the
			// container: the test gives config.Load a stand-in.
			cfg, file := loadServiceConfig(t, name, s, "HEADWATER_CLUSTER_SECRET_FILE="+secret)
			var raw struct {
				Cluster struct {
					SecretFile string `yaml:"secret_file"`
				}
			}
			unmarshalYAML(t, file, &raw)
			if !strings.HasPrefix(file, "deploy/cluster/") {
				t.Errorf("%s's configuration %s is not under deploy/cluster/", name, file)
			}
			k := cfg.Cluster
			if k.NATSURL != natsURL || k.Embedded {
				t.Errorf("%s: cluster.nats_url %q (embedded %v), want %s", name, k.NATSURL, k.Embedded, natsURL)
			}
			if k.Role != config.RoleAll || cfg.RTMP.Address == "" {
				t.Errorf("%s: role %q, rtmp %q: both nodes ingest", name, k.Role, cfg.RTMP.Address)
			}
			originOf[name] = portOf(t, cfg.Origin.Address)
			adminOf[name] = portOf(t, cfg.Admin.Address)
			if want := "http://" + name + ":" + originOf[name]; k.OriginURL != want || cfg.NeedsOriginURL() {
				t.Errorf("%s: cluster.origin_url %q, want %s (the compose service name)", name, k.OriginURL, want)
			}
			if k.NodeID == "" || ids[k.NodeID] != "" {
				t.Errorf("%s: cluster.node_id %q empty or the same as %s's", name, k.NodeID, ids[k.NodeID])
			}
			ids[k.NodeID] = name
			if !cfg.Transcoder.Enabled || cfg.Transcoder.LocalWorkers != 0 {
				t.Errorf("%s: transcoder enabled %v, local_workers %d: the ladder is the workers' (enabled, 0)",
					name, cfg.Transcoder.Enabled, cfg.Transcoder.LocalWorkers)
			}
			// Publishers reach both nodes; the origin and admin are
			// published too (on 127.0.0.1).
			published := map[string]bool{}
			for _, p := range s.Ports {
				_, target := publishedPort(t, p)
				published[target] = true
			}
			for _, want := range []string{
				portOf(t, cfg.RTMP.Address) + "/tcp", portOf(t, cfg.SRT.Address) + "/udp", portOf(t, cfg.RTSP.Address) + "/tcp",
				originOf[name] + "/tcp", adminOf[name] + "/tcp",
			} {
				if !published[want] {
					t.Errorf("%s does not publish %s (%q)", name, want, s.Ports)
				}
			}
			// The image's HEALTHCHECK asks the origin on 8080.
			if s.Healthcheck == nil && originOf[name] != "8080" {
				t.Errorf("%s: the origin listens on %s, but the image's health check asks 8080", name, originOf[name])
			}
			deps := dependsOn(t, name, s)
			if deps["nats"] != "service_healthy" || deps["cluster-secret"] != "service_completed_successfully" {
				t.Errorf("%s depends on %v, want nats healthy and cluster-secret completed", name, deps)
			}
			// The secret file is in the volume cluster-secret writes it to.
			secretFiles[raw.Cluster.SecretFile] = true
			found := false
			for vol, dir := range namedVolumes(s.Volumes) {
				rel, ok := strings.CutPrefix(raw.Cluster.SecretFile, dir+"/")
				if !ok {
					continue
				}
				found = true
				genDir, mounted := namedVolumes(gen.Volumes)[vol]
				if !mounted || !strings.Contains(genScript, genDir+"/"+rel) {
					t.Errorf("%s reads %s from volume %s, which cluster-secret does not write (%v)", name, raw.Cluster.SecretFile, vol, gen.Volumes)
				}
				if !slices.Contains(s.Volumes, vol+":"+dir+":ro") {
					t.Errorf("%s mounts the secret volume %s read-write", name, vol)
				}
			}
			if !found {
				t.Errorf("%s: cluster.secret_file %q is on no named volume of the service (%q)", name, raw.Cluster.SecretFile, s.Volumes)
			}
		}
		if len(secretFiles) != 1 {
			t.Errorf("the nodes read different secret files: %v", secretFiles)
		}
	})

	workerAdmin := ""
	t.Run("worker", func(t *testing.T) {
		w := c.Services["worker"]
		// Replicas of a service with a fixed host port or a container
		// name collide: --scale worker=3 needs neither.
		if len(w.Ports) != 0 || w.ContainerName != "" {
			t.Errorf("worker publishes %q / container_name %q: it could not be scaled", w.Ports, w.ContainerName)
		}
		if w.Image != c.Services["headwater"].Image || len(w.Command) == 0 || w.Command[0] != "worker" {
			t.Errorf("worker runs %q %q, want the headwater image's worker command", w.Image, w.Command)
		}
		cfg, file := loadServiceConfig(t, "worker", w)
		if !strings.HasPrefix(file, "deploy/cluster/") {
			t.Errorf("the worker's configuration %s is not under deploy/cluster/", file)
		}
		if cfg.Cluster.NATSURL != natsURL {
			t.Errorf("worker: cluster.nats_url %q, want %s", cfg.Cluster.NATSURL, natsURL)
		}
		if cfg.Cluster.NodeID != "" {
			t.Errorf("worker: cluster.node_id %q would be the same on every replica", cfg.Cluster.NodeID)
		}
		workerAdmin = portOf(t, cfg.Admin.Address)
		// No origin: the image's HEALTHCHECK (origin /healthz) must be
		// replaced by one on the admin listener. Written as a string
		// (CMD-SHELL): podman-compose 1.0.3 takes "CMD" off a list test in
		// place, once per service, so the second replica of a scaled
		// service fails to start ("unknown healthcheck test type").
		if w.Healthcheck == nil || !slices.Equal(w.Healthcheck.Test, healthTest{"CMD-SHELL", "headwater-healthcheck 127.0.0.1:" + workerAdmin}) {
			t.Errorf("worker healthcheck %+v, want the string headwater-healthcheck 127.0.0.1:%s (it has no origin; a string for podman-compose's replicas)", w.Healthcheck, workerAdmin)
		}
		if deps := dependsOn(t, "worker", w); deps["nats"] != "service_healthy" {
			t.Errorf("worker depends on %v, want nats healthy", deps)
		}
	})

	t.Run("cdn-cluster", func(t *testing.T) {
		if len(originOf) != len(clusterNodes) {
			t.Fatal("the nodes' configuration did not load (see the nodes subtest): nothing to check the CDN against")
		}
		s := c.Services["cdn-cluster"]
		m := mounts(t, s.Volumes)
		if m["/etc/nginx/nginx.conf"] != "deploy/nginx/cdn-cluster.conf" {
			t.Fatalf("cdn-cluster mounts %v, want deploy/nginx/cdn-cluster.conf as /etc/nginx/nginx.conf", m)
		}
		conf := readRepoFile(t, "deploy/nginx/cdn-cluster.conf")
		inc := regexp.MustCompile(`include (\S+);`).FindStringSubmatch(conf)
		if inc == nil || m[inc[1]] != "deploy/nginx/cdn-cache.conf" {
			t.Errorf("cdn-cluster.conf includes %v, which is not deploy/nginx/cdn-cache.conf in the container (%v)", inc, m)
		}
		// Both origins in the upstream, and nothing else.
		server := regexp.MustCompile(`(?m)^\s*server\s+([a-z0-9.-]+:[0-9]+)[^;]*;`)
		var servers []string
		for _, sm := range server.FindAllStringSubmatch(conf, -1) {
			servers = append(servers, sm[1])
		}
		var want []string
		for _, n := range clusterNodes {
			want = append(want, n+":"+originOf[n])
		}
		if !slices.Equal(servers, want) {
			t.Errorf("cdn-cluster.conf's upstream servers %q, want every node's origin %q", servers, want)
		}
		// Otherwise the same nginx configuration as cdn.conf, which cdntest
		// runs and measures: comments and the upstream's servers aside.
		norm := func(s string) []string {
			var out []string
			for _, l := range strings.Split(s, "\n") {
				l = strings.TrimSpace(l)
				if l == "" || strings.HasPrefix(l, "#") || server.MatchString(l) {
					continue
				}
				out = append(out, l)
			}
			return out
		}
		a, b := norm(readRepoFile(t, "deploy/nginx/cdn.conf")), norm(conf)
		if !slices.Equal(a, b) {
			for i := range min(len(a), len(b)) {
				if a[i] != b[i] {
					t.Errorf("cdn-cluster.conf differs from cdn.conf beyond the upstream's servers: %q vs %q", b[i], a[i])
					break
				}
			}
			t.Errorf("cdn-cluster.conf differs from cdn.conf beyond the upstream's servers (%d vs %d directive lines)", len(b), len(a))
		}
		listen := false
		for _, p := range s.Ports {
			_, target := publishedPort(t, p)
			listen = listen || (target == "8081/tcp" && strings.Contains(conf, "listen 8081;"))
		}
		if !listen {
			t.Errorf("cdn-cluster publishes %q, not its listen 8081", s.Ports)
		}
		deps := dependsOn(t, "cdn-cluster", s)
		for _, n := range clusterNodes {
			if deps[n] != "service_healthy" {
				t.Errorf("cdn-cluster depends on %v: nginx resolves %s once, at start-up, so it waits for it to be healthy", deps, n)
			}
		}
	})

	t.Run("prometheus", func(t *testing.T) {
		if workerAdmin == "" || len(adminOf) != len(clusterNodes) {
			t.Fatal("the nodes' or the worker's configuration did not load (see their subtests): nothing to check the scrape targets against")
		}
		var prom struct {
			ScrapeConfigs []struct {
				JobName      string `yaml:"job_name"`
				DNSSDConfigs []struct {
					Names []string
					Type  string
					Port  int
				} `yaml:"dns_sd_configs"`
			} `yaml:"scrape_configs"`
		}
		unmarshalYAML(t, "deploy/prometheus/prometheus.yml", &prom)
		found := map[string]string{} // service -> job
		for _, sc := range prom.ScrapeConfigs {
			for _, d := range sc.DNSSDConfigs {
				for _, n := range d.Names {
					port := adminOf[n]
					if n == "worker" {
						port = workerAdmin
					}
					if d.Type != "A" || strconv.Itoa(d.Port) != port {
						t.Errorf("job %s: %s resolved as %s with port %d, want A records and the admin port %s", sc.JobName, n, d.Type, d.Port, port)
					}
					found[n] = sc.JobName
				}
			}
		}
		for _, n := range clusterNodes {
			// In job headwater, so that HeadwaterDown and the dashboard's
			// process panels cover them.
			if found[n] != "headwater" {
				t.Errorf("Prometheus finds %s in job %q, want job headwater through dns_sd_configs", n, found[n])
			}
		}
		if found["worker"] == "" {
			t.Error("Prometheus does not find the worker replicas (dns_sd_configs on the compose service name worker)")
		}
	})
}

// TestPodmanCompose checks what scripts/container-test.sh runs
// docker-compose.yml with under podman-compose, where no registry is
// reachable: deploy/podman/compose.yml names only services of the compose
// file and replaces every registry image but Grafana's (no Debian package)
// with a localhost image the script builds from a Containerfile of
// deploy/podman; the script starts every service of the default stack but
// Grafana, and every service of the cluster profile; CI runs it.
func TestPodmanCompose(t *testing.T) {
	c := loadCompose(t)
	var o struct {
		Services map[string]struct {
			Image  string
			Deploy struct{ Replicas string }
		}
	}
	unmarshalYAML(t, "deploy/podman/compose.yml", &o)
	script := readRepoFile(t, "scripts/container-test.sh")
	for name, s := range o.Services {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("deploy/podman/compose.yml names %s, which docker-compose.yml does not have", name)
			continue
		}
		if s.Image == "" {
			continue
		}
		m := regexp.MustCompile(`(?m)^\s*build ` + regexp.QuoteMeta(s.Image) + ` (deploy/podman/[a-z-]+\.Containerfile)\b`).FindStringSubmatch(script)
		if !strings.HasPrefix(s.Image, "localhost/") || m == nil {
			t.Errorf("%s: image %s is not a localhost image scripts/container-test.sh builds from deploy/podman", name, s.Image)
			continue
		}
		if _, err := os.Stat(filepath.Join(repoRoot, m[1])); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, s := range c.Services {
		if s.Build != nil || name == "grafana" {
			continue
		}
		if o.Services[name].Image == "" {
			t.Errorf("%s runs the registry image %s, which deploy/podman/compose.yml does not replace", name, s.Image)
		}
	}
	if o.Services["worker"].Deploy.Replicas == "" {
		t.Error("deploy/podman/compose.yml does not scale the workers (podman-compose 1.0.3 ignores --scale)")
	}
	stack := slices.DeleteFunc(slices.Clone(defaultServices), func(s string) bool { return s == "grafana" })
	for _, want := range [][]string{stack, clusterServices} {
		if up := "up -d --no-build " + strings.Join(want, " "); !strings.Contains(script, up) {
			t.Errorf("scripts/container-test.sh does not run podman-compose %s", up)
		}
	}
	if !regexp.MustCompile(`(?m)^\./scripts/container-test\.sh$`).MatchString(readRepoFile(t, ".ci/run")) {
		t.Error(".ci/run does not run ./scripts/container-test.sh")
	}
}

func unmarshalYAML(t *testing.T, name string, v any) {
	t.Helper()
	if err := yaml.Unmarshal([]byte(readRepoFile(t, name)), v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// TestDeployFilesParse parses every YAML and JSON file of the deployment.
func TestDeployFilesParse(t *testing.T) {
	var files []string
	for _, dir := range []string{"deploy", "docs/grafana"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			switch path.Ext(p) {
			case ".yml", ".yaml", ".json":
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	files = append(files, filepath.Join(repoRoot, "docker-compose.yml"))
	if len(files) < 7 {
		t.Fatalf("only %d files: %v", len(files), files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if path.Ext(f) == ".json" {
			err = json.Unmarshal(b, &v)
		} else {
			err = yaml.Unmarshal(b, &v)
		}
		if err != nil || v == nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

var (
	// A definition: Name: "headwater_…", NewDesc("headwater_…", or a
	// constructor such as ingest.NewCounterVec("headwater_…".
	metricDef = regexp.MustCompile(`(?:Name:\s*|NewDesc\(\s*|\b[Nn]ew(?:Counter|Gauge|Histogram|Summary)(?:Vec)?\(\s*)"(headwater_[a-z0-9_]+)"`)
	// A prefix constant, as in: const ns = "headwater_transcoder_" ... Name: ns + "queue_depth".
	metricPrefix = regexp.MustCompile(`const\s+(\w+)\s*=\s*"(headwater_[a-z0-9_]*)"`)
	metricUse    = regexp.MustCompile(`\b((?:headwater|nginx|go|process)_[a-z0-9_]+|up)\b`)
	// Namespace and subsystem constants, as in gopqueue: const ns, sub =
	// "headwater", "gopqueue" with Namespace: ns, Subsystem: sub, and the
	// rest of the name in a Name: field or a helper's first argument
	// (gauge("jobs_pending", …)).
	metricNSSub  = regexp.MustCompile(`const\s+\w+\s*,\s*\w+\s*=\s*"headwater"\s*,\s*"([a-z0-9_]+)"`)
	metricNSName = regexp.MustCompile(`(?:\bName:\s*|\b(?:gauge|counter|histogram|summary)\(\s*)"([a-z0-9_]+)"`)
)

// plannedPrefix names metrics the dashboard and alerts may use before the
// code that defines them is merged (the transcoder's).
const plannedPrefix = "headwater_transcoder_"

// sourceMetrics lists the headwater_* metrics registered in the code.
func sourceMetrics(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(repoRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == ".git" || n == "cdntest" || n == "testdata" || n == "vendor" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range metricDef.FindAllSubmatch(b, -1) {
			out[string(m[1])] = p
		}
		for _, c := range metricPrefix.FindAllSubmatch(b, -1) {
			re := regexp.MustCompile(`Name:\s*` + string(c[1]) + `\s*\+\s*"([a-z0-9_]+)"`)
			for _, m := range re.FindAllSubmatch(b, -1) {
				out[string(c[2])+string(m[1])] = p
			}
		}
		if c := metricNSSub.FindSubmatch(b); c != nil && bytes.Contains(b, []byte("Subsystem:")) {
			for _, m := range metricNSName.FindAllSubmatch(b, -1) {
				if !bytes.HasPrefix(m[1], []byte("headwater_")) {
					out["headwater_"+string(c[1])+"_"+string(m[1])] = p
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 15 {
		t.Fatalf("found only %d metrics in the code", len(out))
	}
	return out
}

// checkMetricNames reports headwater_* names in expr that the code does not
// define (histogram suffixes allowed).
func checkMetricNames(t *testing.T, where, expr string, defined map[string]string) {
	t.Helper()
	for _, m := range metricUse.FindAllString(expr, -1) {
		if !strings.HasPrefix(m, "headwater_") {
			continue
		}
		base := m
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, suffix); ok && defined[b] != "" {
				base = b
			}
		}
		if defined[base] == "" && !strings.HasPrefix(base, plannedPrefix) {
			t.Errorf("%s uses %s, which no code defines", where, m)
		}
	}
}

func TestDashboard(t *testing.T) {
	defined := sourceMetrics(t)
	var d struct {
		UID        string
		Title      string
		Templating struct {
			List []struct{ Name, Type, Query string }
		}
		Panels []struct {
			ID         int
			Type       string
			Title      string
			GridPos    *struct{ H, W, X, Y int }
			Datasource *struct{ Type, UID string }
			Targets    []struct {
				Expr       string
				RefID      string
				Datasource *struct{ Type, UID string }
			}
		}
	}
	if err := json.Unmarshal([]byte(readRepoFile(t, "docs/grafana/headwater.json")), &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" || len(d.Templating.List) == 0 || d.Templating.List[0].Name != "datasource" {
		t.Fatalf("uid %q, title %q, templating %+v", d.UID, d.Title, d.Templating)
	}
	ids := map[int]bool{}
	used := map[string]bool{}
	cells := map[[2]int]string{} // grid cell -> panel, to catch overlaps
	for _, p := range d.Panels {
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or repeated", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
			continue
		}
		for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W; x++ {
			for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H; y++ {
				if other, ok := cells[[2]int{x, y}]; ok {
					t.Errorf("panels %q and %q overlap", other, p.Title)
				}
				cells[[2]int{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %+v, %d targets", p.Title, p.Datasource, len(p.Targets))
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" || tg.RefID == "" {
				t.Errorf("panel %q: empty target", p.Title)
			}
			checkMetricNames(t, "panel "+strconv.Quote(p.Title), tg.Expr, defined)
			for _, m := range metricUse.FindAllString(tg.Expr, -1) {
				used[m] = true
			}
		}
	}
	// The panels the operations issue asks for.
	for _, m := range []string{
		"headwater_streams_active", "headwater_ingest_bytes_total", "headwater_part_publish_latency_seconds_bucket",
		"headwater_first_part_latency_seconds_bucket", "headwater_origin_requests_total", "nginx_http_requests_total",
		"headwater_transcoder_queue_depth", "headwater_transcoder_jobs_total",
		// The Cluster row (issue 13).
		"headwater_cluster_nats_connected", "headwater_gopqueue_jobs_pending", "headwater_gopqueue_jobs_in_flight",
		"headwater_gopqueue_job_wait_seconds_bucket", "headwater_gopqueue_jobs_redelivered_total",
		"headwater_gopqueue_late_results_discarded_total", "headwater_relay_upstream_requests_total",
		"headwater_relay_collapsed_total", "headwater_relay_cache_hits_total", "headwater_cluster_placement_claims_total",
		"headwater_cluster_publish_refused_total",
	} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}

func TestAlertsAndOperationsDoc(t *testing.T) {
	defined := sourceMetrics(t)
	ops := readRepoFile(t, "docs/operations.md")
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert  string
				Expr   string
				For    string
				Labels map[string]string
			}
		}
	}
	unmarshalYAML(t, "deploy/prometheus/alerts.yml", &rules)
	seen := map[string]bool{}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || seen[r.Alert] || r.Expr == "" || r.Labels["severity"] == "" {
				t.Errorf("rule %+v: name missing or repeated, or no expr or severity", r)
			}
			seen[r.Alert] = true
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q", r.Alert, r.For)
				}
			}
			checkMetricNames(t, "alert "+r.Alert, r.Expr, defined)
			if !strings.Contains(ops, r.Alert) || !strings.Contains(ops, r.Expr) {
				t.Errorf("docs/operations.md does not quote alert %s with its expr:\n%s", r.Alert, r.Expr)
			}
		}
	}
	if n < 5 {
		t.Errorf("only %d alerts", n)
	}
	for _, a := range []string{"HeadwaterClusterNATSDisconnected", "HeadwaterGOPQueueGrowing", "HeadwaterLateResultsDiscarded"} {
		if !seen[a] {
			t.Errorf("no alert %s (the cluster's)", a)
		}
	}
	if !strings.Contains(readRepoFile(t, "deploy/prometheus/prometheus.yml"), "- alerts.yml") {
		t.Error("prometheus.yml does not load alerts.yml")
	}

	// The metrics reference lists every metric the code defines.
	var missing []string
	for m, where := range sourceMetrics(t) {
		if !regexp.MustCompile("`" + m + "`").MatchString(ops) {
			missing = append(missing, fmt.Sprintf("%s (%s)", m, where))
		}
	}
	slices.Sort(missing)
	for _, m := range missing {
		t.Errorf("docs/operations.md does not document %s", m)
	}
}
