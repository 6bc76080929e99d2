"""kctl, the kubectl look-alike CLI (console script `kctl` -> main.main).

Module map:
  main.py         click group, global flags (hoisted from anywhere on the line),
                  lazy subcommands, the `kctl lab` extension hook
  config.py       kubeconfig / $KCTL_SERVER / --server resolution
  common.py       Ctx, error rendering, resource arguments, manifest decoding
  printers.py     tables (kubectl's columns and cell logic), AGE, -o yaml|json|name
  jsonpath.py     -o jsonpath=...
  merge.py        apply's three-way merge (keyed lists), also used by patch
  apply.py        apply, create (-f, namespace, deployment); create_job.py: create job
  get.py          get (+ --watch); describe.py / describe_blocks.py: describe
                  (describe_workloads.py: jobs, cronjobs, daemonsets, statefulsets, pdbs)
  delete.py       delete; edit.py: label, annotate, taint, scale, set image
  nodes.py        cordon, uncordon, drain; rollout.py: rollout * (daemonsets:
                  rollout_daemonset.py; statefulsets: rollout_statefulset.py)
  wait.py, patch.py, generators.py (run, expose), config_cmd.py (config *),
  info.py (api-resources, version); logs.py, exec.py (through the
  apiserver's node proxy)

Where kctl knowingly differs from kubectl:
  * usage errors exit 2 (click), kubectl uses 1; every other error exits 1;
  * `apply -f` decodes all documents of a file first and applies nothing
    from a file with an undecodable document (unknown kind or field); server
    errors stay per document as in kubectl;
  * the last-applied annotation holds the manifest as kctl decoded it
    (compact, sorted JSON, server-owned fields stripped), not the raw text;
  * `get events` sorts oldest first; without an Eviction API in the client,
    drain decides PodDisruptionBudgets client-side (machinery.disruption)
    and then deletes; patch is applied client-side.
"""
