"""Validates OCSF events, one JSON object per line (a file or standard input), offline
against one pinned OCSF schema version: the JSON Schema of each event's class (with the
profiles its metadata.profiles names) is generated from the OCSF schema data that the
ocsf-json-schema package ships, and checked with jsonschema (draft 2020-12).

Beyond the JSON Schema, each event must claim the pinned version, name only profiles its
class has, and have type_uid = class_uid * 100 + activity_id.

Usage: ocsf_validate.py VERSION [FILE]
Exit 0 with "N events valid (...)" when every line is valid and there is at least one;
1 naming each invalid line; 2 when the schema version is not available.
"""

import json
import sys

import jsonschema
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema, get_packaged_versions


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    version = sys.argv[1]
    if version not in get_packaged_versions():
        print(f"OCSF {version} is not packaged (have {sorted(get_packaged_versions())})", file=sys.stderr)
        return 2
    raw = get_ocsf_schema(version)
    schema = OcsfJsonSchemaEmbedded(raw)
    validators = {}
    source = open(sys.argv[2], encoding="utf-8") if len(sys.argv) == 3 else sys.stdin
    bad = 0
    classes = {}
    n = 0
    for lineno, line in enumerate(source, 1):
        if not line.strip():
            continue
        n += 1
        errors = check(line, version, raw, schema, validators, classes)
        for e in errors:
            print(f"line {lineno}: {e}", file=sys.stderr)
        if errors:
            bad += 1
            print(f"line {lineno} was: {line.strip()[:400]}", file=sys.stderr)
    if n == 0:
        print("no events to validate", file=sys.stderr)
        return 1
    if bad:
        print(f"{bad} of {n} events invalid against OCSF {version}", file=sys.stderr)
        return 1
    summary = ", ".join(f"{name}: {count}" for name, count in sorted(classes.items()))
    print(f"{n} events valid against OCSF {version} ({summary})")
    return 0


def check(line, version, raw, schema, validators, classes):
    try:
        event = json.loads(line)
    except json.JSONDecodeError as e:
        return [f"not JSON: {e}"]
    if not isinstance(event, dict):
        return ["not a JSON object"]
    class_uid = event.get("class_uid")
    try:
        name = schema.lookup_class_name_from_uid(class_uid)
    except (ValueError, TypeError):
        return [f"class_uid {class_uid!r} is no class of OCSF {version}"]
    metadata = event.get("metadata") or {}
    profiles = tuple(sorted(metadata.get("profiles") or []))
    errors = []
    if metadata.get("version") != version:
        errors.append(f"metadata.version is {metadata.get('version')!r}, not {version}")
    known = set(raw["classes"][name].get("profiles") or [])
    for p in profiles:
        if p not in known:
            errors.append(f"profile {p!r} is not one of class {name}'s")
    activity = event.get("activity_id")
    if isinstance(activity, int) and event.get("type_uid") != class_uid * 100 + activity:
        errors.append(f"type_uid {event.get('type_uid')} is not class_uid * 100 + activity_id")
    key = (name, profiles)
    if key not in validators:
        generated = schema.get_class_schema(name, list(profiles))
        validators[key] = jsonschema.Draft202012Validator(generated)
    for e in validators[key].iter_errors(event):
        path = "/".join(str(p) for p in e.absolute_path) or "(event)"
        errors.append(f"{path}: {e.message[:300]}")
    if not errors:
        classes[name] = classes.get(name, 0) + 1
    return errors


if __name__ == "__main__":
    sys.exit(main())
