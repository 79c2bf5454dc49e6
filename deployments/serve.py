"""Serve every edgefleet flow as a Prefect deployment (the reference's job queue).

Run by `edgefleet up` as ``python -m deployments.serve``; ``pause_on_shutdown=False`` so
stopping it does not pause the deployments.
"""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import EntrypointType, RunnerDeployment

from flows.deploy import deploy_application
from flows.stop import stop_application
from flows.update import update_application


def build_deployments() -> list[RunnerDeployment]:
    built = []
    for flow in (deploy_application, stop_application, update_application):
        deployment = flow.to_deployment(name=flow.name, tags=["edgefleet"],
                                        entrypoint_type=EntrypointType.MODULE_PATH)
        assert isinstance(deployment, RunnerDeployment)
        built.append(deployment)
    return built


def main() -> None:
    serve(*build_deployments(), pause_on_shutdown=False, limit=8)


if __name__ == "__main__":
    main()
