import os, sys, time
import numpy as np
import keras
from keras import layers

def block(x, f, sep):
    Conv = layers.SeparableConv2D if sep else layers.Conv2D
    sc = layers.Conv2D(f, 1, strides=2, use_bias=False)(x)
    sc = layers.BatchNormalization()(sc)
    x = Conv(f, 3, padding="same", use_bias=False)(x); x = layers.BatchNormalization()(x); x = layers.Activation("relu")(x)
    x = Conv(f, 3, padding="same", use_bias=False)(x); x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    return layers.Activation("relu")(layers.add([x, sc]))

def build(width, sep):
    i = keras.Input((48,48,1))
    x = layers.Conv2D(width, 3, padding="same", use_bias=False)(i); x = layers.BatchNormalization()(x); x = layers.Activation("relu")(x)
    x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x); x = layers.BatchNormalization()(x); x = layers.Activation("relu")(x)
    for f in (width*2, width*4, width*8):
        x = block(x, f, sep)
    x = layers.GlobalAveragePooling2D()(x); x = layers.Dropout(0.4)(x)
    return keras.Model(i, layers.Dense(7, activation="softmax")(x))

x = np.random.rand(64*12, 48, 48, 1).astype("float32"); y = np.random.randint(0, 7, 64*12)
for width, sep in [(32, False), (32, True), (48, True), (24, False)]:
    m = build(width, sep); m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(x[:128], y[:128], batch_size=64, verbose=0)
    t = time.time(); m.fit(x, y, batch_size=64, verbose=0); dt = time.time() - t
    print(keras.backend.backend(), width, sep, m.count_params(), f"{len(x)/dt:.0f} img/s", flush=True)
