#!/usr/bin/env python3
"""Renders a chat template the way transformers does (jinja2 sandbox,
trim_blocks, lstrip_blocks, loop controls, raise_exception, tojson), for
comparison with glimpse's minijinja rendering.

Reads {"template": str, "messages": [...], "add_generation_prompt": bool,
"bos_token": str, "eos_token": str} on stdin; prints the rendered text.
"""
import json
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

req = json.load(sys.stdin)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
env.filters["tojson"] = lambda x, indent=None: json.dumps(x, indent=indent, ensure_ascii=False)
env.globals["raise_exception"] = raise_exception
template = env.from_string(req.pop("template"))
sys.stdout.write(template.render(**req))
