# BSD-3-Clause (see the project's licence)
"""Shared by the piwheels_* modules in library/: the ``python`` option they all take and
one JSON request to ``python -m piwheels_build.admin`` on standard input.

Imported as ``ansible.module_utils.piwheels_admin``: Ansible finds it through
``module_utils = module_utils`` in ansible.cfg (ANSIBLE_MODULE_UTILS in
molecule/fleet/molecule.yml) and ships it inside each module's payload.
"""

from __future__ import annotations

import json

from ansible.module_utils.basic import AnsibleModule

PYTHON = "/opt/piwheels/venv/bin/python"


def admin_module(argument_spec, **kwargs):
    """An AnsibleModule with ``argument_spec`` and the ``python`` option (the interpreter
    that can import piwheels_build), supporting check mode; ``kwargs`` go to AnsibleModule."""
    spec = dict(argument_spec, python=dict(type="path", default=PYTHON))
    return AnsibleModule(argument_spec=spec, supports_check_mode=True, **kwargs)


def call_admin(module, action, params):
    """Send ``action`` with ``params`` (and check mode) to ``python -m piwheels_build.admin``;
    return ``(rc, stderr, answer)``. Fails the module only when there is no JSON answer."""
    request = json.dumps({"action": action, "params": params, "check": module.check_mode})
    rc, out, err = module.run_command([module.params["python"], "-m", "piwheels_build.admin"],
                                      data=request, binary_data=True)
    try:
        answer = json.loads(out)
    except ValueError:
        module.fail_json(msg="piwheels_build.admin gave no answer (is piwheels_build "
                             "installed for {}?)".format(module.params["python"]),
                         rc=rc, stdout=out, stderr=err)
    return rc, err, answer


def run_admin(module, action, params):
    """``call_admin``, failing the module when the action failed; return its answer."""
    rc, err, answer = call_admin(module, action, params)
    if rc != 0 or answer.get("failed"):
        answer.pop("failed", None)
        module.fail_json(rc=rc, stderr=err, **answer)
    return answer
