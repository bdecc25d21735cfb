"""The registry's shape: one module per concern under contracts/registry/, composed by
contracts/Registry.vy within the size a chain accepts (with room to grow), every module
with an external function under the reentrancy lock, and views only tests need kept in
the test harness, not the registry."""

SIZE_LIMIT = 24_300  # bytes of runtime code as deployed; EIP-170 allows 24,576
IMMUTABLES = 128  # the 4 immutables Vyper appends to the runtime code at deployment
TEST_VIEWS = {
    "slot_word",
    "engagement",
    "cancelled",
    "domain_separator",
    "bid_digest",
}
MATH_VIEWS = {
    "bounds",
    "dutch_price",
    "reward_at",
    "link_at",
    "reason_text",
    "EIP712_NAME",
    "EIP712_VERSION",
    "BID_TYPEHASH",
    "index_after_proof",
}


def runtime_size(container) -> int:
    return len(container.contract_type.runtime_bytecode.to_bytes())


def test_registry_runtime_bytecode__fits_the_size_limit_with_room(project):
    size = runtime_size(project.Registry) + IMMUTABLES
    assert size <= SIZE_LIMIT, f"Registry.vy deploys {size:,} bytes of runtime code, above {SIZE_LIMIT:,}"


def test_test_harness__is_the_registry_plus_views_only_tests_need(project):
    registry = {a.name for a in project.Registry.contract_type.abi if a.type == "function"}
    harness = {a.name for a in project.RegistryHarness.contract_type.abi if a.type == "function"}
    assert harness - registry == TEST_VIEWS
    assert registry < harness
    assert runtime_size(project.RegistryHarness) + IMMUTABLES <= 24_576  # deployable under EIP-170


def test_registry_math__holds_the_views_that_read_no_state(project):
    views = {a.name for a in project.RegistryMath.contract_type.abi if a.type == "function"}
    assert views == MATH_VIEWS
