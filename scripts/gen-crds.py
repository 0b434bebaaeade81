#!/usr/bin/env python3
"""Generates manifests/crds.yaml: the four highlander CRDs with structural
schemas for every spec field of SPEC section 2, the status subresource,
printer columns and short names; and HighlanderFence, the per-tenant fence
object (docs/lease.md, "Fencing enforced by the API server").  Run it after changing the spec; the
output is committed.  (JSON is valid YAML; kubectl reads it as is.)"""
import json
import os

STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
STRLIST = {"type": "array", "items": STR}
STRMAP = {"type": "object", "additionalProperties": STR}
RES = {"type": "object", "properties": {k: STR for k in ("cpuRequest", "memoryRequest", "cpuLimit", "memoryLimit")}}

COMMON = {
    "image": STR,
    "script": {"type": "object", "required": ["commands"],
               "properties": {"commands": dict(STRLIST, minItems=1), "shell": STR}},
    "command": STRLIST,
    "args": STRLIST,
    "env": STRMAP,
    "resources": RES,
    "configMaps": STRLIST,
    "secrets": STRLIST,
    "labels": STRMAP,
    "annotations": STRMAP,
    "nodeSelector": STRMAP,
    "ports": {"type": "array", "items": {"type": "object", "required": ["containerPort"], "properties": {
        "name": STR, "containerPort": dict(INT, minimum=1, maximum=65535),
        "servicePort": dict(INT, minimum=1, maximum=65535)}}},
    "sidecars": {"type": "array", "items": {"type": "object", "required": ["name", "image"], "properties": {
        "name": STR, "image": STR, "command": STRLIST, "args": STRLIST, "env": STRMAP, "resources": RES,
        "volumeMounts": {"type": "array", "items": {"type": "object", "required": ["name", "mountPath"],
                                                     "properties": {"name": STR, "mountPath": STR,
                                                                    "readOnly": BOOL}}},
        "securityContext": {"type": "object", "properties": {
            "privileged": BOOL, "runAsUser": INT, "runAsGroup": INT, "runAsNonRoot": BOOL,
            "readOnlyRootFilesystem": BOOL}}}}},
    "terminationGracePeriod": STR,
    "restartPolicy": {"type": "string", "enum": ["Always", "OnFailure", "Never"]},
}
REPLICATED = {"replicas": dict(INT, minimum=1), "healthCheckPath": STR,
              "healthCheckPort": dict(INT, minimum=1, maximum=65535), "readinessTimeout": STR}

STATUS = {"type": "object", "properties": {
    "active": BOOL, "healthy": BOOL, "phase": STR, "lastError": STR, "leaderId": STR, "clusterName": STR,
    "fencingToken": INT, "observedGeneration": INT, "lastTransition": dict(STR, format="date-time"),
    "details": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    "conditions": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                   "items": {"type": "object", "required": ["type", "status"], "properties": {
                       "type": STR, "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                       "reason": STR, "message": STR, "observedGeneration": INT,
                       "lastTransitionTime": dict(STR, format="date-time")}}}}}

BASE_COLS = [{"name": "ACTIVE", "type": "boolean", "jsonPath": ".status.active"},
             {"name": "HEALTHY", "type": "boolean", "jsonPath": ".status.healthy"}]
AGE = {"name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

KINDS = [
    ("WorkloadProcess", "workloadprocesses", "wlp",
     {"maxRestarts": dict(INT, minimum=0), "gracePeriod": STR}, ["image", "script"], []),
    ("WorkloadCronJob", "workloadcronjobs", "wlc", {"schedule": STR}, ["image", "script", "schedule"],
     [{"name": "SCHEDULE", "type": "string", "jsonPath": ".spec.schedule"}]),
    ("WorkloadService", "workloadservices", "wls", REPLICATED, ["image", "script"],
     [{"name": "REPLICAS", "type": "integer", "jsonPath": ".spec.replicas"}]),
    ("WorkloadPersistent", "workloadpersistents", "wlper", dict(REPLICATED, serviceName=STR, persistentVolumes={
        "type": "array", "items": {"type": "object", "required": ["name", "mountPath", "size"], "properties": {
            "name": STR, "mountPath": STR, "storageClassName": STR, "size": STR}}}), ["image", "script"],
     [{"name": "REPLICAS", "type": "integer", "jsonPath": ".spec.replicas"}]),
]


def crd(kind, plural, short, extra, required, cols):
    props = dict(COMMON)
    props.update(extra)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "%s.highlander.plexobject.io" % plural,
                     "labels": {"app.kubernetes.io/part-of": "highlander"}},
        "spec": {
            "group": "highlander.plexobject.io",
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": kind + "List", "plural": plural, "singular": kind.lower(),
                      "shortNames": [short], "categories": ["highlander"]},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": BASE_COLS + cols + [AGE],
                "schema": {"openAPIV3Schema": {"type": "object", "required": ["spec"], "properties": {
                    "apiVersion": STR, "kind": STR, "metadata": {"type": "object"},
                    "spec": {"type": "object", "required": required, "properties": props},
                    "status": STATUS}}},
            }],
        },
    }


def fence_crd():
    """The fence: the highest fencing token a leader of the tenant claimed.
    A custom resource rather than a ConfigMap: a ValidatingAdmissionPolicy
    whose paramKind is a built-in type loses its parameters for good once
    no binding uses that kind (kubernetes/kubernetes#130887, #133827); CRD
    parameters are not affected.  Not in the highlander category, so
    `kubectl delete highlander --all` leaves fences alone."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "highlanderfences.highlander.plexobject.io",
                     "labels": {"app.kubernetes.io/part-of": "highlander"}},
        "spec": {
            "group": "highlander.plexobject.io",
            "scope": "Namespaced",
            "names": {"kind": "HighlanderFence", "listKind": "HighlanderFenceList", "plural": "highlanderfences",
                      "singular": "highlanderfence", "shortNames": ["hlfence"]},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "additionalPrinterColumns": [{"name": "TOKEN", "type": "integer", "jsonPath": ".spec.token"}, AGE],
                "schema": {"openAPIV3Schema": {"type": "object", "required": ["spec"], "properties": {
                    "apiVersion": STR, "kind": STR, "metadata": {"type": "object"},
                    "spec": {"type": "object", "required": ["token"], "properties": {
                        "token": {"type": "integer", "format": "int64", "minimum": 0,
                                  "description": "The highest fencing token claimed; only ever raised."}}}}}},
            }],
        },
    }


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "manifests", "crds.yaml")
    docs = [json.dumps(crd(*k), indent=2) for k in KINDS] + [json.dumps(fence_crd(), indent=2)]
    with open(out, "w") as f:
        f.write("# Generated by scripts/gen-crds.py; do not edit by hand.\n")
        for d in docs:
            f.write("---\n" + d + "\n")


if __name__ == "__main__":
    main()
