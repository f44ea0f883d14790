"""Procedural cel-shaded character portraits: the synthetic training corpus for the from-scratch model.

Choice lists come from the app's catalogues (customizer/character.py), so the model learns exactly the words the
designer offers; how each choice is drawn (colours, sizes, which painter) lives in render_styles.yaml. Shapes are
drawn with PIL at `supersample` x the output size and LANCZOS-downsampled; lighting and themes are numpy
post-processes on the small image.

Geometry is in head units (crown to chin = 1.0, head centre at y = 0, y grows downwards). A person's face, marks,
parting and outfit colours come from `Identity` alone, so the same person survives any scene, expression, framing
or theme; `Variation` holds everything that changes between photos of one person.

Modules: geometry (colour / spline / Pen helpers), context (styles, Ctx, cel shadows), people (Identity, Variation,
attributes, captions), backgrounds (scenes), body + outfits (the figure), face + eyes + mouths (front head),
profile (side head), hair + hair_styles + hair_profile (hair), effects (themes, lighting), compose (render).
The public names of the former single-file renderer are re-exported here.
"""
from .backgrounds import (BACKGROUNDS, BG, bg_abstract, bg_beach, bg_cafe, bg_city, bg_forest, bg_library,
                          bg_mountains, bg_space, bg_studio)
from .body import (Y_ANKLE, Y_ARMPIT, Y_CROTCH, Y_HIP, Y_KNEE, Y_NECK, Y_SHOULDER, Y_WAIST, Body, draw_arms,
                   draw_hands, draw_legs, draw_near_shoulder, draw_neck)
from .compose import render, render_with_mask
from .context import CUSTOM_SCENE, STYLES_PATH, Ctx, cel, styles
from .effects import draw_circlet, draw_sparkles
from .eyes import draw_brow, draw_eye
from .face import draw_age, draw_ears, draw_face_front, draw_marks, draw_nose, face_outline
from .geometry import Colour, Pen, Pt, clamp_x, ellipse_pts, jitter, mix, mul, offset, rgba, spline
from .hair import Hair
from .hair_profile import hair_profile
from .hair_styles import (HAIR_PAINTERS, HAIR_TOPS, hair_braided, hair_bun, hair_buzz, hair_curly, hair_mohawk,
                          hair_ponytail, hair_straight, hair_top)
from .mouths import MOUTHS, mouth_angry, mouth_laugh, mouth_neutral, mouth_oh, mouth_sad, mouth_side, mouth_smile
from .outfits import (OUTFITS, outfit_armour, outfit_casual, outfit_dress, outfit_formal, outfit_hoodie, outfit_robe,
                      outfit_sporty, outfit_uniform)
from .people import MARKS, Identity, Variation, caption, default_attrs, random_attrs
from .profile import draw_face_profile, profile_outline
