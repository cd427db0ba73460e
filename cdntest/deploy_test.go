package cdntest

// Docker cannot run here, so these tests read the Docker, compose and
// monitoring files the way a linter would, and check them against the code
// and the docs: the ports the servers listen on, the configuration keys, the
// metric names, the nginx configuration the CDN test runs.

import (
	"bytes"
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
	var froms, exposes, users, healthchecks, entrypoints, cmds, runs, copies []dockerInstruction
	args := map[string]bool{}
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
			name, _, _ := strings.Cut(in.args, "=")
			args[name] = true
		}
	}

	t.Run("stages", func(t *testing.T) {
		if len(froms) != 2 {
			t.Fatalf("want a build and a runtime stage, got %d FROM", len(froms))
		}
		if !regexp.MustCompile(`^golang:\S*bookworm AS build$`).MatchString(froms[0].args) {
			t.Errorf("build stage %q, want golang:<1.26>-bookworm AS build", froms[0].args)
		}
		if !strings.Contains(readRepoFile(t, "Dockerfile"), "ARG GO_VERSION=1.26") {
			t.Error("the build stage should use Go 1.26 (go.mod)")
		}
		if froms[1].args != "debian:bookworm-slim" {
			t.Errorf("runtime stage %q, want debian:bookworm-slim", froms[1].args)
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
		// directory owned by the user it runs as.
		forkLib := false
		for _, c := range copies {
			if strings.Contains(c.args, "/out/cache/headwater /var/cache/headwater") &&
				strings.Contains(c.args, "--chown=10001:10001") {
				forkLib = true
			}
		}
		if !forkLib {
			t.Error("the fork server library is not copied to /var/cache/headwater owned by 10001:10001")
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
	Services map[string]struct {
		Image       string
		Build       any
		Command     []string
		Volumes     []string
		Ports       []string
		Environment map[string]string
		DependsOn   yaml.Node `yaml:"depends_on"`
	}
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
