#!/usr/bin/env python3
"""Validates OCSF records (JSON lines) against the published OCSF schema.

    validate.py VERSION FILE...

Each line must be one OCSF event. Its class is read from `class_uid`, and the
JSON Schema of that class is generated from the OCSF schema export packaged
by `ocsf-json-schema` (the schema as published at schema.ocsf.io, not a copy
written for Bannin), then checked with `jsonschema` (draft 2020-12). Prints
one line per class with its count, every invalid record with why, and exits
1 if any record is invalid or a line is not JSON.

tests/ocsf/setup.sh installs both packages in a virtual environment.
"""

import collections
import json
import sys

from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    version, files = sys.argv[1], sys.argv[2:]
    schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=version))
    validators = {}
    counts = collections.Counter()
    bad = 0
    for path in files:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as e:
                    print(f"{path}:{n}: not JSON: {e}")
                    bad += 1
                    continue
                uid = record.get("class_uid")
                name = schema.lookup_class_name_from_uid(class_uid=uid) if isinstance(uid, int) else None
                if name is None:
                    print(f"{path}:{n}: unknown class_uid {uid!r}")
                    bad += 1
                    continue
                if record.get("metadata", {}).get("version") != version:
                    print(f"{path}:{n}: metadata.version is not {version}")
                    bad += 1
                # The profiles the record declares add their attributes (the
                # host profile: device and actor on every class).
                profiles = tuple(sorted(record.get("metadata", {}).get("profiles", [])))
                if (name, profiles) not in validators:
                    validators[(name, profiles)] = Draft202012Validator(
                        schema.get_class_schema(class_name=name, profiles=list(profiles))
                    )
                validator = validators[(name, profiles)]
                errors = sorted(validator.iter_errors(record), key=lambda e: list(e.path))
                key = f"{uid} {name} activity {record.get('activity_id')}"
                counts[key] += 1
                for e in errors[:5]:
                    where = "/".join(str(p) for p in e.absolute_path) or "(record)"
                    print(f"{path}:{n}: {name}: {where}: {e.message[:300]}")
                if errors:
                    bad += 1
    for key, count in sorted(counts.items()):
        print(f"{key}: {count}")
    print(f"{sum(counts.values())} records, {bad} invalid")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
