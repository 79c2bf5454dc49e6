"""Applications and their versions: what vendors define and publish."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session, select

from edgefleet import bundled_files, url_templates
from edgefleet import parameters as P
from edgefleet.crud import get_application, get_version, versions_of
from edgefleet.db import session_scope
from edgefleet.errors import AlreadyExists, ComposeError, InvalidInput, NotFound
from edgefleet.models.documents import Limits, load_yaml, text_of
from edgefleet.models.inputs import (
    PARSED,
    AppKind,
    VersionCreate,
    check_name,
    check_semver,
)
from edgefleet.models.parameters import Parameter, ParameterDeclaration
from edgefleet.models.records import Application, ApplicationVersion, Deployment
from edgefleet.record_views import application_view
from edgefleet.validation import describe, validated


def _version_spec(
    application: str,
    version: str,
    *,
    image: str | None,
    compose: str | bytes | None,
    stack: str | bytes | None,
    env: list[str] | dict[str, str] | None,
    ports: list[str] | None,
    registry_secret: str | None = None,
    allow_privileged: bool = False,
    params: ParamsArg = None,
    urls: list[str] | dict[str, str] | None = None,
    files: FilesArg = None,
) -> tuple[VersionCreate, list[Parameter]]:
    given = [k for k, v in (("image", image), ("compose", compose), ("stack", stack))
             if v is not None]
    if len(given) != 1:
        raise InvalidInput("give exactly one of --image REF, --compose FILE or --stack FILE")
    kind = {"image": AppKind.IMAGE, "compose": AppKind.COMPOSE, "stack": AppKind.SWARM}[given[0]]
    templates = url_templates.parse_urls(urls)
    bundled = bundled_files.checked(files, bundled_files.FileLimits.from_settings())
    text: str | None = None
    doc: Any = None
    raw = compose if compose is not None else stack
    if raw is not None:  # parsed once: the checks below and the model read ``doc``
        what = "compose file" if kind is AppKind.COMPOSE else "stack file"
        limits = Limits.from_settings()
        text = text_of(raw, what=what, limits=limits)
        doc = load_yaml(text, what=what, limits=limits)
        if doc is None:
            raise InvalidInput(f"{what} is empty: give a mapping with a 'services' key")
        if kind is AppKind.COMPOSE:  # a missing file is named before anything else is said
            bundled_files.check_references(doc, bundled, what=what,
                                           host_paths_allowed=allow_privileged)
            bundled_files.check_env_files(doc, bundled, limits=limits)
    spec = validated(
        lambda **fields: VersionCreate.model_validate(
            fields, context=None if doc is None else {PARSED: doc}),
        version=version,
        kind=kind,
        image=image,
        compose=text,
        env=env or {},
        ports=ports or [],
        registry_secret=registry_secret,
        allow_privileged=allow_privileged,
        urls=templates,
        files=bundled,
    )
    if templates:  # each ${port:...} must name a port the version publishes
        if spec.kind is AppKind.IMAGE:
            published = url_templates.image_published(application, spec.ports)
        else:
            published = url_templates.compose_published(doc)
        url_templates.check_against(templates, published)
    _check_bundled(spec)
    return spec, _parameters(spec, params, doc)


ParamsArg = Sequence[ParameterDeclaration | dict[str, Any]] | None
FilesArg = dict[str, str | bytes] | None


def _check_bundled(spec: VersionCreate) -> None:
    """Only compose applications bundle files (their references are checked before the
    file is validated: ``bundled_files.check_references``)."""
    if spec.files and spec.kind is not AppKind.COMPOSE:
        raise InvalidInput("--file bundles files with a compose application (--compose); "
                           f"a{'n' if spec.kind is AppKind.IMAGE else ''} {spec.kind.value} "
                           "application cannot use them")


def _parameters(spec: VersionCreate, params: ParamsArg, doc: Any) -> list[Parameter]:
    """The version's parameters: discovered in its file (``doc``, as loaded), refined by
    ``params``; a compose or stack file is then validated by compose itself (``config
    --quiet``) with their defaults (a required one without default gets a placeholder), so
    that compose refuses an invalid file here, in its own words, not at deploy."""
    declared: list[ParameterDeclaration] = []
    for item in params or []:
        decl = item if isinstance(item, ParameterDeclaration) else validated(
            ParameterDeclaration, **item)
        if any(d.name == decl.name for d in declared):
            raise InvalidInput(f"--param {decl.name} is declared twice")
        declared.append(decl)
    discovered: list[Parameter] = []
    what = "stack file" if spec.kind is AppKind.SWARM else "compose file"
    if spec.compose is not None:
        discovered = P.discover(doc)
    try:
        merged = P.merge(discovered, declared)
    except ValidationError as exc:  # a merged parameter that cannot be
        raise InvalidInput(describe(exc)) from exc
    if spec.compose is not None:
        from edgefleet import compose_cli  # runs a subprocess: only where a file is checked

        try:
            compose_cli.check_file(spec.compose, env=P.validation_env(merged, spec.env),
                                   files=spec.files)
        except ComposeError as exc:
            raise InvalidInput(f"{what} refused by compose: {exc}") from exc
    return merged


def _version_row(app_id: int, spec: VersionCreate, params: list[Parameter]
                 ) -> ApplicationVersion:
    return ApplicationVersion(application_id=app_id, **spec.model_dump(),
                              parameters=[p.model_dump() for p in params])


def create_application(
    name: str,
    version: str,
    *,
    image: str | None = None,
    compose: str | bytes | None = None,
    stack: str | bytes | None = None,
    env: list[str] | dict[str, str] | None = None,
    ports: list[str] | None = None,
    registry_secret: str | None = None,
    allow_privileged: bool = False,
    params: ParamsArg = None,
    urls: list[str] | dict[str, str] | None = None,
    files: FilesArg = None,
) -> ApplicationVersion:
    """Create an application with its first version (compose/stack: the file as text or bytes).

    A file asking for host-level privileges (``privileged``, host namespaces, bind mounts of
    host paths, ``cap_add``, ``devices``, ``security_opt``) is refused unless
    ``allow_privileged``; the allowance and what it allows are recorded on the version.
    ``params``: parameter declarations (``{"name", "default", "required", "description",
    "sensitive"}``), refining those discovered in the file.

    ``urls``: named URL templates (``["NAME=TEMPLATE", ...]`` or a mapping, see
    ``edgefleet.url_templates``), refused when a placeholder is unknown or names a port the
    version does not publish.

    ``files``: files bundled with the version (plain name → UTF-8 text or bytes, see
    ``edgefleet.bundled_files``); the compose file's relative ``env_file``, ``file:``
    configs and bind mounts must each name one, else the version is refused.
    """
    try:
        check_name(name, "application")
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    spec, found = _version_spec(
        name, version, image=image, compose=compose, stack=stack, env=env, ports=ports,
        registry_secret=registry_secret, allow_privileged=allow_privileged, params=params,
        urls=urls, files=files)
    with session_scope() as session:
        if session.exec(select(Application).where(Application.name == name)).first():
            raise AlreadyExists(
                f"an application named {name!r} already exists; add a version with "
                f"`edgefleet app version {name} V ...`"
            )
        app = Application(name=name)
        session.add(app)
        session.flush()
        assert app.id is not None
        row = _version_row(app.id, spec, found)
        session.add(row)
    return row


def add_version(
    name: str,
    version: str,
    *,
    image: str | None = None,
    compose: str | bytes | None = None,
    stack: str | bytes | None = None,
    env: list[str] | dict[str, str] | None = None,
    ports: list[str] | None = None,
    registry_secret: str | None = None,
    allow_privileged: bool = False,
    params: ParamsArg = None,
    urls: list[str] | dict[str, str] | None = None,
    files: FilesArg = None,
) -> ApplicationVersion:
    """Add a (not yet published) version to an existing application (``allow_privileged``,
    ``params``, ``urls`` and ``files`` as in ``create_application``)."""
    spec, found = _version_spec(
        name, version, image=image, compose=compose, stack=stack, env=env, ports=ports,
        registry_secret=registry_secret, allow_privileged=allow_privileged, params=params,
        urls=urls, files=files)
    with session_scope() as session:
        app = get_application(session, name=name)
        assert app.id is not None
        try:
            get_version(session, application=app, version=spec.version)
        except NotFound:
            pass
        else:
            raise AlreadyExists(f"application {name!r} already has version {spec.version}")
        row = _version_row(app.id, spec, found)
        session.add(row)
    return row


def publish_version(name: str, version: str) -> ApplicationVersion:
    """Mark a version published and tell operators of older deployments.

    With `edgefleet up` running this emits ``edgefleet.application.published`` and the
    deployment trigger runs flow notify-application-update (a reconcile catches a lost
    event); without a server the notifications are written here. Publishing again adds
    nothing.
    """
    version = _semver_or_invalid(version)
    with session_scope() as session:
        app = get_application(session, name=name)
        row = get_version(session, application=app, version=version)
        if not row.published:
            row.published = True
            row.published_at = datetime.now(UTC)
            session.add(row)
    from edgefleet import events, version_notices  # Prefect; it builds on this module

    payload = {"name": name, "version": version}
    if not events.emit(events.APPLICATION_PUBLISHED, f"edgefleet.application.{name}", payload):
        for notice in version_notices.notify_all(name, version):
            events.emit_notice(notice)  # a server alone still runs the channels' automations
    return row


def delete_application(name: str) -> int:
    """Forget an application and its versions (how many); refused while deployments run it.

    Its published versions stay in the registry: this only removes edgefleet's definitions
    (an application whose images moved to another registry is deleted and created again).
    """
    with session_scope() as session:
        app = get_application(session, name=name)
        used = session.exec(select(Deployment.id).where(Deployment.application_id == app.id)
                            ).all()
        if used:
            shown = ", ".join(dep_id[:12] for dep_id in used[:5])
            more = f" and {len(used) - 5} more" if len(used) > 5 else ""
            raise InvalidInput(
                f"application {name!r} still has {len(used)} deployment(s) ({shown}{more}); "
                f"delete them first (`edgefleet delete ID --force`), then delete {name!r}"
            )
        versions = versions_of(session, application=app)
        for row in versions:
            session.delete(row)
        session.flush()  # the versions go before the application they point at
        session.delete(app)
    return len(versions)


def list_applications() -> list[dict[str, Any]]:
    with session_scope() as session:
        apps = session.exec(select(Application).order_by(Application.name)).all()
        return [_application_public(session, app) for app in apps]


def show_application(name: str) -> dict[str, Any]:
    with session_scope() as session:
        return _application_public(session, get_application(session, name=name))


def _application_public(session: Session, app: Application) -> dict[str, Any]:
    return application_view(app.model_dump(), [v.model_dump() for v in versions_of(
        session, application=app)])


def _semver_or_invalid(version: str) -> str:
    try:
        return check_semver(version)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
