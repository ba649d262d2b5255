"""The official Kubernetes Python client against a minik API server.

Run by tests/python_client.rs with KUBECONFIG pointing at the server. Creates, lists, watches,
patches and deletes pods, deployments and services, and resumes a watch from a
resourceVersion. Any failed expectation raises, so the process exits non-zero.
"""

import sys

from kubernetes import client, config, watch

NS = "default"


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def pod(name, labels):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="c", image="busybox", command=["sleep", "3600"])]
        ),
    )


def main():
    config.load_kube_config()
    core = client.CoreV1Api()
    apps = client.AppsV1Api()

    # Pods: create, list with a selector, patch, watch from a resourceVersion, delete.
    created = core.create_namespaced_pod(NS, pod("py-a", {"app": "py"}))
    expect(created.metadata.uid, "a created pod has a uid")
    core.create_namespaced_pod(NS, pod("py-b", {"app": "py"}))
    listed = core.list_namespaced_pod(NS, label_selector="app=py")
    expect(sorted(p.metadata.name for p in listed.items) == ["py-a", "py-b"], "list by label")
    start = listed.metadata.resource_version

    patched = core.patch_namespaced_pod("py-a", NS, {"metadata": {"labels": {"tier": "front"}}})
    expect(patched.metadata.labels == {"app": "py", "tier": "front"}, "merge patch of labels")
    core.delete_namespaced_pod("py-b", NS, grace_period_seconds=0)

    # A watch from the list's resourceVersion sees exactly what happened after it, in order.
    seen = []
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_pod,
        NS,
        label_selector="app=py",
        resource_version=start,
        timeout_seconds=10,
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 2:
            w.stop()
    expect(seen == [("MODIFIED", "py-a"), ("DELETED", "py-b")], "resumed watch: %r" % seen)

    # Resuming from a later list's resourceVersion gives only what came after it.
    after = core.list_namespaced_pod(NS).metadata.resource_version
    core.patch_namespaced_pod("py-a", NS, {"metadata": {"labels": {"tier": "back"}}})
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_pod, NS, resource_version=after, timeout_seconds=10
    ):
        expect(event["type"] == "MODIFIED", "event after resume: %s" % event["type"])
        expect(event["object"].metadata.labels["tier"] == "back", "the later change")
        w.stop()

    # Deployments: create, read, strategic merge patch of a container, scale, delete.
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-web"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels={"app": "py-web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py-web"}),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="web", image="nginx:1.25")]
                ),
            ),
        ),
    )
    apps.create_namespaced_deployment(NS, deployment)
    names = [d.metadata.name for d in apps.list_namespaced_deployment(NS).items]
    expect("py-web" in names, "deployment listed")
    patched = apps.patch_namespaced_deployment(
        "py-web",
        NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}},
    )
    containers = patched.spec.template.spec.containers
    expect(len(containers) == 1 and containers[0].image == "nginx:1.26", "strategic merge patch")
    scale = apps.patch_namespaced_deployment_scale("py-web", NS, {"spec": {"replicas": 3}})
    expect(scale.spec.replicas == 3, "scale")
    expect(apps.read_namespaced_deployment("py-web", NS).spec.replicas == 3, "scaled")
    apps.delete_namespaced_deployment("py-web", NS)
    try:
        apps.read_namespaced_deployment("py-web", NS)
        expect(False, "deleted deployment still readable")
    except client.exceptions.ApiException as e:
        expect(e.status == 404, "404 after delete, got %s" % e.status)

    # Services: create, list, patch, delete.
    service = client.V1Service(
        metadata=client.V1ObjectMeta(name="py-svc"),
        spec=client.V1ServiceSpec(
            selector={"app": "py-web"}, ports=[client.V1ServicePort(port=80, target_port=8080)]
        ),
    )
    created = core.create_namespaced_service(NS, service)
    expect(created.spec.cluster_ip, "a ClusterIP is allocated")
    expect(
        [s.metadata.name for s in core.list_namespaced_service(NS).items].count("py-svc") == 1,
        "service listed",
    )
    patched = core.patch_namespaced_service("py-svc", NS, {"metadata": {"labels": {"x": "y"}}})
    expect(patched.metadata.labels == {"x": "y"}, "service patched")
    core.delete_namespaced_service("py-svc", NS)
    expect(
        "py-svc" not in [s.metadata.name for s in core.list_namespaced_service(NS).items],
        "service deleted",
    )

    # Errors arrive as Status objects the client understands.
    try:
        core.create_namespaced_pod(NS, pod("py-a", {}))
        expect(False, "a duplicate create succeeded")
    except client.exceptions.ApiException as e:
        expect(e.status == 409, "409 AlreadyExists, got %s" % e.status)
    core.delete_namespaced_pod("py-a", NS, grace_period_seconds=0)
    print("python client: ok")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - the test reads the message
        print("python client: FAILED: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        raise
