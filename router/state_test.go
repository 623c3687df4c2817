package router

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/weavelab/weave/router/netdev"
)

func TestStateRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if recs, err := loadState(dir); err != nil || recs != nil {
		t.Fatalf("loading a missing table = %v, %v", recs, err)
	}
	recs := []*record{
		{ID: "netns:c1", NS: netdev.NSID{Dev: 4, Ino: 4026532000}, HostVeth: "vethwe0123abcd", MAC: "0a:00:00:00:00:01",
			Addrs: []netip.Prefix{netip.MustParsePrefix("10.2.1.4/24"), netip.MustParsePrefix("10.3.0.1/16")}},
		{ID: "pid:42", NS: netdev.NSID{Dev: 4, Ino: 4026532001}, HostVeth: "vethwe0123abce", MAC: "0a:00:00:00:00:02",
			Addrs: []netip.Prefix{netip.MustParsePrefix("10.2.1.5/24")}},
	}
	for range 2 { // overwrite works
		if err := saveState(dir, "weave", recs); err != nil {
			t.Fatal(err)
		}
	}
	got, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, recs) {
		t.Fatalf("loaded %+v, want %+v", got, recs)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != stateFileName {
		t.Fatalf("state dir holds %v, want only %s (no temporary files)", entries, stateFileName)
	}
	if err := removeState(dir); err != nil {
		t.Fatal(err)
	}
	if err := removeState(dir); err != nil {
		t.Fatalf("removing a missing table: %v", err)
	}
}

func TestStateRejectsGarbage(t *testing.T) {
	dir := t.TempDir()
	for _, body := range []string{"{", `{"version": 99}`} {
		if err := os.WriteFile(filepath.Join(dir, stateFileName), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadState(dir); err == nil {
			t.Errorf("loadState(%q) succeeded", body)
		}
	}
}

func TestStateInMemoryOnly(t *testing.T) {
	if err := saveState("", "weave", []*record{{ID: "netns:c1"}}); err != nil {
		t.Fatal(err)
	}
	if recs, err := loadState(""); err != nil || recs != nil {
		t.Fatalf("loadState(\"\") = %v, %v", recs, err)
	}
}
