"""The registry's shape: one module per concern under contracts/registry/, composed by
contracts/Registry.vy within the size a chain accepts (with room to grow), every module
with an external function under the reentrancy lock, and views only tests need kept in
the test harness, not the registry."""

SIZE_LIMIT = 24_200  # bytes of runtime code; EIP-170 allows 24,576
TEST_VIEWS = {
    "slot_word",
    "engagement",
    "cancelled",
    "domain_separator",
    "bid_digest",
}
MATH_VIEWS = {"bounds", "dutch_price", "reward_at", "link_at", "reason_text"}


def runtime_size(container) -> int:
    return len(container.contract_type.runtime_bytecode.to_bytes())


def test_registry_runtime_bytecode__fits_the_size_limit_with_room(project):
    size = runtime_size(project.Registry)
    assert size <= SIZE_LIMIT, f"Registry.vy compiles to {size:,} bytes of runtime code, above {SIZE_LIMIT:,}"


def test_test_harness__is_the_registry_plus_views_only_tests_need(project):
    registry = {a.name for a in project.Registry.contract_type.abi if a.type == "function"}
    harness = {a.name for a in project.RegistryHarness.contract_type.abi if a.type == "function"}
    assert harness - registry == TEST_VIEWS
    assert registry < harness
    # Deployable on a chain that enforces EIP-170: 24,576 bytes with the 4 immutables (128).
    assert runtime_size(project.RegistryHarness) + 128 <= 24_576


def test_registry_math__holds_the_views_that_read_no_state(project):
    views = {a.name for a in project.RegistryMath.contract_type.abi if a.type == "function"}
    assert views == MATH_VIEWS
