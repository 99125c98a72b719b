/**
 * testcontainers against podman's Docker-compatible API (started by ./global-setup.ts). The environment is set
 * before testcontainers is loaded, because it reads DOCKER_HOST and the reaper switch when it first connects.
 */
import type { PortWithOptionalBinding } from 'testcontainers';
import { inject } from 'vitest';
import { TEST_LABEL } from './global-setup.ts';

export async function loadTestcontainers(image: string) {
  process.env.DOCKER_HOST = inject('dockerHost');
  // Ryuk (the reaper) is an image from Docker Hub, which cannot be pulled here; the suite removes its own
  // containers, and the global teardown removes any labelled leftovers.
  process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';
  // Ports are published on loopback only (below). Without this, testcontainers takes a machine that has
  // /.dockerenv (as these do) for a container and connects to the bridge's gateway address instead.
  process.env.TESTCONTAINERS_HOST_OVERRIDE = '127.0.0.1';
  const tc = await import('testcontainers');
  // Podman 4.3 (Debian 12) lists every EXPOSEd port in a container's HostConfig.PortBindings, with null for the
  // unpublished ones (podman 4.4 omits them, as Docker does), and testcontainers waits until each listed port is
  // bound. So every port the image exposes is published, on loopback.
  const info = await (await tc.getContainerRuntimeClient()).image.inspect(tc.ImageName.fromString(image));
  const exposed = Object.keys(info.Config.ExposedPorts ?? {}).map((p) => Number.parseInt(p, 10));

  /**
   * A container started the way the chart runs Plugboard (restricted Pod Security): read-only root filesystem,
   * every capability dropped, no privilege escalation; the image's own user. Published ports are bound to
   * 127.0.0.1 only (testcontainers binds every interface by default).
   */
  class PlugboardContainer extends tc.GenericContainer {
    constructor() {
      super(image);
      this.withExposedPorts(...exposed);
      this.withLabels({ [TEST_LABEL]: 'container' })
        .withSecurityOpt('no-new-privileges')
        .withTmpFs({ '/tmp': 'rw,noexec,nosuid,size=16m' });
      this.hostConfig.ReadonlyRootfs = true;
      this.hostConfig.CapDrop = ['ALL'];
    }

    override withExposedPorts(...ports: PortWithOptionalBinding[]): this {
      super.withExposedPorts(...ports);
      for (const bindings of Object.values(this.hostConfig.PortBindings ?? {}))
        for (const b of bindings as { HostIp?: string }[]) b.HostIp = '127.0.0.1';
      return this;
    }
  }
  return { ...tc, PlugboardContainer, imageInfo: info };
}
