package policy

import (
	"context"
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/dbalproxy/dbalproxy/decision"
	"go.yaml.in/yaml/v3"
)

// contractCase is one entry of testdata/cases.yaml.
type contractCase struct {
	Note  string         `yaml:"note"`
	Input map[string]any `yaml:"input"`
	Want  map[string]any `yaml:"want"`
}

// TestContract decides the YAML cases with the shipped policy set. Inputs go
// through their JSON shape into Input, as a caller's would; decisions are
// compared as JSON documents (without the version).
func TestContract(t *testing.T) {
	b, err := os.ReadFile("testdata/cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cases []contractCase
	if err := yaml.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 25 {
		t.Fatalf("only %d cases", len(cases))
	}
	e := newEngine(t, shippedDir, decision.ModeStrict, false)
	for _, c := range cases {
		t.Run(c.Note, func(t *testing.T) {
			var in decision.Input
			if err := viaJSON(c.Input, &in); err != nil {
				t.Fatalf("input: %v", err)
			}
			d, err := e.Decide(context.Background(), &in)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			d.Version = ""
			var got, want map[string]any
			if err := viaJSON(d, &got); err != nil {
				t.Fatal(err)
			}
			if err := viaJSON(c.Want, &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				gb, _ := json.Marshal(got)
				wb, _ := json.Marshal(want)
				t.Errorf("decision\n got %s\nwant %s", gb, wb)
			}
		})
	}
}

func viaJSON(from, to any) error {
	b, err := json.Marshal(from)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, to)
}
