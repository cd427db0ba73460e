package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestRunHTTP(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 10000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	defer srv.Close()
	list := filepath.Join(t.TempDir(), "urls")
	if err := os.WriteFile(list, []byte("# segments\n"+srv.URL+"/a\n\n"+srv.URL+"/b\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	jsonFile := filepath.Join(t.TempDir(), "report.json")
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"http", "--urls", list, "--url-list", srv.URL + "/c",
		"--connections", "4", "--duration", "300ms", "--warmup", "50ms", "--baseline", "50ms",
		"--pid", strconv.Itoa(os.Getpid()), "--label", "test", "--json", "--json-out", jsonFile}, &out, &errOut)
	if err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	var rep httpReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if saved, err := os.ReadFile(jsonFile); err != nil || !bytes.Equal(saved, out.Bytes()) {
		t.Errorf("--json-out wrote %q (%v), stdout had %q", saved, err, out.Bytes())
	}
	if rep.URLs != 3 || rep.Connections != 4 || rep.Label != "test" || rep.Requests == 0 || rep.Errors != 0 {
		t.Fatalf("report %+v", rep)
	}
	if rep.Bytes != int64(rep.Requests)*10000 {
		t.Errorf("%d bytes for %d requests", rep.Bytes, rep.Requests)
	}
	if rep.Machine.Cores < 1 || rep.Machine.ServerRunQueueWait == nil {
		t.Errorf("machine %+v", rep.Machine)
	}
	if rep.Latency.Count != rep.Requests || rep.ReqPerSec <= 0 || rep.BaselineCores == nil || rep.CPUSecondsPerGBN == nil {
		t.Errorf("report %+v", rep)
	}
	// The server here is this process: its CPU must show.
	if rep.ServerCPUSeconds <= 0 || rep.CPUSecondsPerGB <= 0 {
		t.Errorf("server CPU %v s, %v s/GB", rep.ServerCPUSeconds, rep.CPUSecondsPerGB)
	}

	out.Reset()
	err = run(context.Background(), []string{"http", "--url-list", srv.URL + "/missing", "--connections", "2",
		"--duration", "100ms", "--warmup", "0s"}, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "errors") || !strings.Contains(out.String(), "HTTP 404×") {
		t.Errorf("404s not reported:\n%s", out.String())
	}
}

func TestRunUsageErrors(t *testing.T) {
	var out, errOut bytes.Buffer
	for _, args := range [][]string{
		nil,
		{"nope"},
		{"http"},
		{"http", "--url-list", "http://127.0.0.1:1/", "--pid", "x"},
		{"live", "--rtmp", "http://x/live"},
		{"live", "--streams", "0"},
	} {
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
	if err := run(context.Background(), []string{"help"}, &out, &errOut); err != nil || !strings.Contains(out.String(), "hwload live") {
		t.Errorf("help: %v %q", err, out.String())
	}
}
