"""Tenants: who a request is, and which collections it may touch.

`TENANT_KEYS` gives each tenant its own API keys ("acme:KEY1,acme:KEY2,globex:KEY3"). A request with a
tenant's key is that tenant: it reads, searches, changes and deletes only the collections it owns, and a
collection it names that nobody owns becomes its own when it first writes to it (a job, an upload, a
stream). Another tenant's collection does not exist for it (404; 409 when it tries to create one under a
name already taken). `API_KEY` stays the operator's: every collection, and the routes that are not about one
collection's data (metrics). Without any key (loopback development), every request is the operator.

Ownership lives in the catalog (`owners` table), so it follows a collection through rebuilds (its
versions keep the name) and goes with it when it is deleted. Collections from before tenants belong to
nobody and are the operator's.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class TenantKeysError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: a tenant, or (tenant None) the operator."""

    tenant: str | None = None

    @property
    def operator(self) -> bool:
        return self.tenant is None


OPERATOR = Principal()


@dataclass(frozen=True, slots=True)
class TenantKeys:
    """Each tenant's keys, compared in constant time; every key is tried, so the answer's timing does not
    tell which tenant (or how many) a key is close to."""

    keys: tuple[tuple[str, str], ...] = ()  # (tenant, key)

    @classmethod
    def parse(cls, text: str) -> TenantKeys:
        pairs: list[tuple[str, str]] = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            tenant, sep, key = item.partition(":")
            tenant, key = tenant.strip(), key.strip()
            if not sep or not TENANT_NAME.fullmatch(tenant):
                raise TenantKeysError(f"TENANT_KEYS entry {tenant!r}: want tenant:key, tenant [a-z0-9_-]")
            if len(key) < 16:
                raise TenantKeysError(
                    f"TENANT_KEYS: the key of tenant {tenant!r} is shorter than 16 characters"
                )
            pairs.append((tenant, key))
        seen = [key for _, key in pairs]
        if len(seen) != len(set(seen)):
            raise TenantKeysError("TENANT_KEYS: a key is given to more than one entry")
        return cls(tuple(pairs))

    def __bool__(self) -> bool:
        return bool(self.keys)

    def tenant_for(self, given: str) -> str | None:
        found = None
        for tenant, key in self.keys:
            if secrets.compare_digest(given.encode(), key.encode()) and found is None:
                found = tenant
        return found

    def keys_of(self, tenant: str) -> list[str]:
        return [key for name, key in self.keys if name == tenant]
