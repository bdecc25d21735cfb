pragma circom 2.0.0;

// Poseidon preimage: "I know x with Poseidon(x) = hash", from circomlib's Poseidon.
// Public signals, in snarkjs's order: hash (output), prover (input).
// prover is the address of whoever submits the proof. It must take part in a
// constraint, or the verifying key gets the point at infinity for it and any value
// would verify (so a proof could be copied out of the mempool by another prover):
// proverSquared is that constraint.
include "circomlib/circuits/poseidon.circom";

template PoseidonPreimage() {
    signal input prover;
    signal input x;
    signal output hash;

    signal proverSquared;
    proverSquared <== prover * prover;

    component poseidon = Poseidon(1);
    poseidon.inputs[0] <== x;
    hash <== poseidon.out;
}

component main {public [prover]} = PoseidonPreimage();
