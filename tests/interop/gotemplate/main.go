// Renders the cases of cases.json with Go's own text/template, so that Sigil's template
// engine (crates/sigil-agent/src/gotemplate) is compared with the language it implements.
//
// Usage: go run main.go cases.json — prints a JSON list with, for each case of "cases"
// and then of "errors", {"out": …} or {"err": …}.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
)

type file struct {
	Data   interface{} `json:"data"`
	Cases  [][2]string `json:"cases"`
	Errors []string    `json:"errors"`
}

type result struct {
	Out *string `json:"out,omitempty"`
	Err *string `json:"err,omitempty"`
}

func render(text string, data interface{}) result {
	funcs := template.FuncMap{
		"upper": strings.ToUpper,
		"fail":  func(args ...interface{}) (string, error) { return "", fmt.Errorf("it failed") },
	}
	t, err := template.New("t").Funcs(funcs).Parse(text)
	if err != nil {
		e := err.Error()
		return result{Err: &e}
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		e := err.Error()
		return result{Err: &e}
	}
	out := b.String()
	return result{Out: &out}
}

func main() {
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	var f file
	if err := json.Unmarshal(raw, &f); err != nil {
		panic(err)
	}
	var results []result
	for _, c := range f.Cases {
		results = append(results, render(c[0], f.Data))
	}
	for _, e := range f.Errors {
		results = append(results, render(e, f.Data))
	}
	out, _ := json.Marshal(results)
	fmt.Println(string(out))
}
