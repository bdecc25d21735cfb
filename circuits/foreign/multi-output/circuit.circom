pragma circom 2.0.0;

// Multi-output: from private a and b (each below 2^64) and a public salt, four outputs:
// sum = a + b, product = a * b, hash = Poseidon(a, b, salt), less = 1 if a < b else 0.
// Public signals, in snarkjs's order: sum, product, hash, less (outputs), salt (input).
// No address input: the binding is none (only for tasks assigned to one prover).
// circomlib's LessThan(64) is only sound for operands below 2^64, so Num2Bits(64)
// range-checks a and b first.
include "circomlib/circuits/poseidon.circom";
include "circomlib/circuits/comparators.circom";
include "circomlib/circuits/bitify.circom";

template MultiOutput() {
    signal input salt;
    signal input a;
    signal input b;
    signal output sum;
    signal output product;
    signal output hash;
    signal output less;

    component aBits = Num2Bits(64);
    aBits.in <== a;
    component bBits = Num2Bits(64);
    bBits.in <== b;

    sum <== a + b;
    product <== a * b;

    component poseidon = Poseidon(3);
    poseidon.inputs[0] <== a;
    poseidon.inputs[1] <== b;
    poseidon.inputs[2] <== salt;
    hash <== poseidon.out;

    component lessThan = LessThan(64);
    lessThan.in[0] <== a;
    lessThan.in[1] <== b;
    less <== lessThan.out;
}

component main {public [salt]} = MultiOutput();
