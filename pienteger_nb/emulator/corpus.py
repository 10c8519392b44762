"""Public-domain prose the text generator learns from (19th-century novels and speeches).

Passages from Jane Austen, Charles Dickens, Herman Melville, Lewis Carroll, Mary Shelley and
Abraham Lincoln, all long out of copyright, plus one fairy-tale paragraph written for this module.
Kept as a string so the package ships no data file.
"""

from __future__ import annotations

CORPUS = """
It is a truth universally acknowledged, that a single man in possession of a good fortune,
must be in want of a wife. However little known the feelings or views of such a man may be on
his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding
families, that he is considered as the rightful property of some one or other of their daughters.

My dear Mr. Bennet, said his lady to him one day, have you heard that Netherfield Park is let at
last? Mr. Bennet replied that he had not. But it is, returned she; for Mrs. Long has just been
here, and she told me all about it. Mr. Bennet made no answer. Do you not want to know who has
taken it? cried his wife impatiently. You want to tell me, and I have no objection to hearing it.
This was invitation enough.

It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of
foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of
Light, it was the season of Darkness, it was the spring of hope, it was the winter of despair, we
had everything before us, we had nothing before us, we were all going direct to Heaven, we were
all going direct the other way.

There were a king with a large jaw and a queen with a plain face, on the throne of England; there
were a king with a large jaw and a queen with a fair face, on the throne of France. In both
countries it was clearer than crystal to the lords of the State preserves of loaves and fishes,
that things in general were settled for ever.

Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my
purse, and nothing particular to interest me on shore, I thought I would sail about a little and
see the watery part of the world. It is a way I have of driving off the spleen and regulating the
circulation. Whenever I find myself growing grim about the mouth; whenever it is a damp, drizzly
November in my soul; whenever I find myself involuntarily pausing before coffin warehouses, and
bringing up the rear of every funeral I meet; then, I account it high time to get to sea as soon
as I can. This is my substitute for pistol and ball. There is nothing surprising in this. If they
but knew it, almost all men in their degree, some time or other, cherish very nearly the same
feelings towards the ocean with me.

There now is your insular city of the Manhattoes, belted round by wharves as Indian isles by
coral reefs; commerce surrounds it with her surf. Right and left, the streets take you waterward.
Its extreme downtown is the battery, where that noble mole is washed by waves, and cooled by
breezes, which a few hours previous were out of sight of land. Look at the crowds of water-gazers
there.

Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing
to do: once or twice she had peeped into the book her sister was reading, but it had no pictures
or conversations in it, and what is the use of a book, thought Alice, without pictures or
conversations? So she was considering in her own mind, as well as she could, for the hot day made
her feel very sleepy and stupid, whether the pleasure of making a daisy-chain would be worth the
trouble of getting up and picking the daisies, when suddenly a White Rabbit with pink eyes ran
close by her.

There was nothing so very remarkable in that; nor did Alice think it so very much out of the way
to hear the Rabbit say to itself, Oh dear! Oh dear! I shall be late! But when the Rabbit actually
took a watch out of its waistcoat-pocket, and looked at it, and then hurried on, Alice started to
her feet, for it flashed across her mind that she had never before seen a rabbit with either a
waistcoat-pocket, or a watch to take out of it, and burning with curiosity, she ran across the
field after it, and fortunately was just in time to see it pop down a large rabbit-hole under the
hedge. In another moment down went Alice after it, never once considering how in the world she
was to get out again.

The rabbit-hole went straight on like a tunnel for some way, and then dipped suddenly down, so
suddenly that Alice had not a moment to think about stopping herself before she found herself
falling down a very deep well. Either the well was very deep, or she fell very slowly, for she had
plenty of time as she went down to look about her and to wonder what was going to happen next.

It was on a dreary night of November that I beheld the accomplishment of my toils. With an anxiety
that almost amounted to agony, I collected the instruments of life around me, that I might infuse
a spark of being into the lifeless thing that lay at my feet. It was already one in the morning;
the rain pattered dismally against the panes, and my candle was nearly burnt out, when, by the
glimmer of the half-extinguished light, I saw the dull yellow eye of the creature open; it
breathed hard, and a convulsive motion agitated its limbs.

You will rejoice to hear that no disaster has accompanied the commencement of an enterprise which
you have regarded with such evil forebodings. I arrived here yesterday, and my first task is to
assure my dear sister of my welfare and increasing confidence in the success of my undertaking. I
am already far north of London, and as I walk in the streets of Petersburgh, I feel a cold northern
breeze play upon my cheeks, which braces my nerves and fills me with delight.

Four score and seven years ago our fathers brought forth on this continent, a new nation,
conceived in Liberty, and dedicated to the proposition that all men are created equal. Now we are
engaged in a great civil war, testing whether that nation, or any nation so conceived and so
dedicated, can long endure. We are met on a great battle-field of that war. We have come to
dedicate a portion of that field, as a final resting place for those who here gave their lives
that that nation might live. It is altogether fitting and proper that we should do this.

But, in a larger sense, we can not dedicate, we can not consecrate, we can not hallow this ground.
The brave men, living and dead, who struggled here, have consecrated it, far above our poor power
to add or detract. The world will little note, nor long remember what we say here, but it can
never forget what they did here. It is for us the living, rather, to be dedicated here to the
unfinished work which they who fought here have thus far so nobly advanced.

Marley was dead: to begin with. There is no doubt whatever about that. The register of his burial
was signed by the clergyman, the clerk, the undertaker, and the chief mourner. Scrooge signed it:
and Scrooge's name was good upon 'Change, for anything he chose to put his hand to. Old Marley was
as dead as a door-nail. Oh! But he was a tight-fisted hand at the grind-stone, Scrooge! a
squeezing, wrenching, grasping, scraping, clutching, covetous, old sinner! Hard and sharp as
flint, from which no steel had ever struck out generous fire; secret, and self-contained, and
solitary as an oyster.

Once upon a time there was a little house in the middle of a great wood, and in the house there
lived an old woman who kept a garden of herbs. Every morning she walked to the well, and every
evening she sat by the fire and told stories to the children of the village, who came to hear of
kings and giants and the long roads that run over the hills to the sea. The children listened
until the candle was nearly burnt out, and then they ran home through the dark, for the night was
cold and the wind was rising in the trees.

Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy disposition, seemed
to unite some of the best blessings of existence; and had lived nearly twenty-one years in the
world with very little to distress or vex her. She was the youngest of the two daughters of a most
affectionate, indulgent father; and had, in consequence of her sister's marriage, been mistress of
his house from a very early period.
"""
