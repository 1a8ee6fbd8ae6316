"""Accounts and organizations inside Label Studio, run by Label Studio's own Python.

This file is executed as a script by the interpreter of Label Studio's
virtualenv (``annotation.server.provision``), with the server's environment
(database, data folder), while the server runs. It imports Django and Label
Studio, never the toolkit; the toolkit never imports it.

Why a script: Label Studio Community puts every account in one organization,
where every member may read, export, change and delete everything. Its API
cannot make an organization or move an account, and accounts made through
its API cannot log in. So this script does, through Label Studio's own
models, what its signup form and start command do:

* the admin account (made by ``label-studio start`` on the first start) is
  kept in the first organization;
* every rater account is made (email, password) if missing, and put alone in
  an organization of its own ("AudioScope rater NAME"), out of every other
  one: a rater sees only the projects, tasks, answers and members of that
  organization;
* a personal access token (Label Studio's JWT refresh token) is made for an
  account that asks for one.

Input on stdin (never argv, where ``ps`` would show passwords), JSON:
``{"admin": {"email", "want_token"}, "raters": [{"name", "email",
"password", "want_token"}]}``. Output on stdout, one JSON line after the
marker line ``AUDIOSCOPE-PROVISION``: per account ``user_id``,
``organization_id`` and ``token`` (only when asked). Errors: exit 3 with one
line on stderr.
"""

import json
import os
import sys

MARKER = "AUDIOSCOPE-PROVISION"
ORG_TITLE = "AudioScope rater {name}"


def _setup() -> None:
    import label_studio

    sys.path.insert(0, os.path.dirname(label_studio.__file__))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "label_studio.core.settings.label_studio")
    import django

    django.setup()


def _token(user) -> str:
    from jwt_auth.models import LSAPIToken

    return LSAPIToken.for_user(user).get_full_jwt()


def _rater(spec) -> dict:
    from django.db import transaction
    from organizations.models import Organization, OrganizationMember
    from users.models import User

    email, password = spec["email"], spec["password"]
    with transaction.atomic():
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            user = User.objects.create_user(email=email, password=password)
            user.username = email.split("@")[0]
            user.save()
        elif not user.check_password(password):
            raise SystemExit(
                f"the rater account {email} exists with another password than the one in the secrets file; "
                "restore the secrets file that created it, or use another rater name"
            )
        title = ORG_TITLE.format(name=spec["name"])
        org = Organization.objects.filter(created_by=user, title=title).first()
        if org is None:
            org = Organization.create_organization(created_by=user, title=title, legacy_api_tokens_enabled=False)
        OrganizationMember.objects.filter(user=user).exclude(organization=org).delete()
        if not OrganizationMember.objects.filter(user=user, organization=org, deleted_at__isnull=True).exists():
            OrganizationMember.objects.filter(user=user, organization=org).delete()
            OrganizationMember.objects.create(user=user, organization=org)
        user.active_organization = org
        user.save(update_fields=["active_organization"])
    others = OrganizationMember.objects.filter(organization=org).exclude(user=user).count()
    if others:
        raise SystemExit(f"the organization of rater {email} has {others} other members; remove them in Label Studio")
    out = {"user_id": user.id, "organization_id": org.id}
    if spec.get("want_token"):
        out["token"] = _token(user)
    return out


def _admin(spec) -> dict:
    from users.models import User

    user = User.objects.filter(email__iexact=spec["email"]).first()
    if user is None:
        raise SystemExit(f"no admin account {spec['email']} in this Label Studio database")
    out = {"user_id": user.id, "organization_id": user.active_organization_id}
    if spec.get("want_token"):
        out["token"] = _token(user)
    return out


def main() -> int:
    request = json.loads(sys.stdin.read())
    try:
        _setup()
        reply = {"admin": _admin(request["admin"]), "raters": {r["name"]: _rater(r) for r in request["raters"]}}
    except SystemExit as e:
        print(str(e), file=sys.stderr)
        return 3
    print(MARKER)
    print(json.dumps(reply))
    return 0


if __name__ == "__main__":
    sys.exit(main())
