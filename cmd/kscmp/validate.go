package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/kubearmor/kscmp/api"
)

const validateLong = `Validate reads policy files and directories (*.yaml, *.yml, *.json; several
documents per file), in the CRD form or the design note's flat form, and reports
every problem it finds, each with its file, line, document, field and value.

With -o yaml or -o json it prints the valid policies in the CRD form, which also
converts flat policies.`

func newValidateCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "validate PATH...",
		Short: "Check KubeArmorSeccompPolicy files and report every problem",
		Long:  validateLong,
		Example: `  kscmp validate policies/
  kscmp validate -o yaml flat-policy.yaml > crd-policy.yaml`,
		Args: argsUsage(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return validate(cmd.OutOrStdout(), args, output, maxInput(cmd))
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text (one line per valid policy), yaml or json (the policies in CRD form)")
	return cmd
}

// validate prints the valid policies of paths and fails with every problem
// found: the valid ones are printed even then, so a reader sees both.
func validate(w io.Writer, paths []string, output string, max int64) error {
	if err := checkOutput(output, "text", "yaml", "json"); err != nil {
		return err
	}
	docs, err := api.LoadLimit(max, paths...)
	if werr := printPolicies(w, output, docs); werr != nil {
		return werr
	}
	if err != nil {
		return invalidErr(err)
	}
	return nil
}

func printPolicies(w io.Writer, format string, docs []api.Document) error {
	switch format {
	case "text":
		for _, d := range docs {
			form := ""
			if d.Flat {
				form = ", flat form"
			}
			if _, err := fmt.Fprintf(w, "valid: %s (%s document %d%s)\n", d.Policy.Key(), d.File, d.Index, form); err != nil {
				return err
			}
		}
		return nil
	case "json":
		list := make([]*api.KubeArmorSeccompPolicy, len(docs))
		for i, d := range docs {
			list[i] = cleanPolicy(d.Policy)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	default:
		for _, d := range docs {
			b, err := yaml.Marshal(cleanPolicy(d.Policy))
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(w, "---\n%s", b); err != nil {
				return err
			}
		}
		return nil
	}
}

// cleanPolicy drops the fields the server owns, so the output is what a
// person writes.
func cleanPolicy(p *api.KubeArmorSeccompPolicy) *api.KubeArmorSeccompPolicy {
	c := p.DeepCopy()
	c.Status = api.PolicyStatus{}
	return c
}

func checkOutput(got string, allowed ...string) error {
	for _, a := range allowed {
		if got == a {
			return nil
		}
	}
	return usageErr("-o %q: want one of %v", got, allowed)
}
