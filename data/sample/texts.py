"""The bundled sample corpus, written by the babelforge team for the demo and tests.

12 languages x 4 topics x 4 short documents. `build_sample.py` turns these into the corpus
files (with planted noise) and the labelled topic-classification set.
"""

TOPICS = ["sports", "food", "technology", "nature"]

DOCS = {
    "en": {
        "sports": [
            "The home team scored twice in the second half and won the football match.",
            "She trains at the swimming pool every morning before the national championship.",
            "The coach said the players must run more and defend better in the next game.",
            "Thousands of fans filled the stadium to watch the final of the tennis tournament.",
        ],
        "food": [
            "My grandmother bakes fresh bread every Sunday and serves it with butter and honey.",
            "This soup is made with tomatoes, onions, garlic and a little olive oil.",
            "The new restaurant near the market serves rice with grilled fish and vegetables.",
            "Boil the pasta for ten minutes, then add the sauce and some grated cheese.",
        ],
        "technology": [
            "The company released a new phone with a faster processor and a better camera.",
            "Engineers wrote software that lets the computer translate text between many languages.",
            "Most people now read the news on the internet instead of buying a newspaper.",
            "Update your laptop regularly so that security problems in the system are fixed.",
        ],
        "nature": [
            "Heavy rain fell over the mountains all night and the river rose quickly.",
            "In spring the forest is full of birds, flowers and young green leaves.",
            "The lake freezes in winter, and snow covers the hills around the village.",
            "Farmers hope the dry weather ends soon because the fields need water.",
        ],
    },
    "fr": {
        "sports": [
            "L'équipe locale a marqué deux buts en seconde période et a gagné le match de football.",
            "Elle s'entraîne à la piscine chaque matin avant le championnat national.",
            "L'entraîneur a dit que les joueurs doivent courir davantage lors du prochain match.",
            "Des milliers de supporters ont rempli le stade pour la finale du tournoi de tennis.",
        ],
        "food": [
            "Ma grand-mère fait du pain frais chaque dimanche et le sert avec du beurre et du miel.",
            "Cette soupe est préparée avec des tomates, des oignons, de l'ail et un peu d'huile d'olive.",
            "Le nouveau restaurant près du marché sert du riz avec du poisson grillé et des légumes.",
            "Faites cuire les pâtes pendant dix minutes, puis ajoutez la sauce et du fromage râpé.",
        ],
        "technology": [
            "L'entreprise a présenté un nouveau téléphone avec un processeur plus rapide et un meilleur appareil photo.",
            "Des ingénieurs ont écrit un logiciel qui permet à l'ordinateur de traduire des textes.",
            "La plupart des gens lisent maintenant les nouvelles sur internet au lieu d'acheter un journal.",
            "Mettez votre ordinateur portable à jour pour corriger les problèmes de sécurité du système.",
        ],
        "nature": [
            "Une forte pluie est tombée sur les montagnes toute la nuit et la rivière a monté très vite.",
            "Au printemps, la forêt est pleine d'oiseaux, de fleurs et de jeunes feuilles vertes.",
            "Le lac gèle en hiver et la neige couvre les collines autour du village.",
            "Les agriculteurs espèrent que la sécheresse finira bientôt, car les champs ont besoin d'eau.",
        ],
    },
    "de": {
        "sports": [
            "Die Heimmannschaft traf in der zweiten Halbzeit zweimal und gewann das Fußballspiel.",
            "Sie trainiert jeden Morgen im Schwimmbad für die nationale Meisterschaft.",
            "Der Trainer sagte, die Spieler müssten im nächsten Spiel mehr laufen und besser verteidigen.",
            "Tausende Fans füllten das Stadion, um das Finale des Tennisturniers zu sehen.",
        ],
        "food": [
            "Meine Großmutter backt jeden Sonntag frisches Brot und serviert es mit Butter und Honig.",
            "Diese Suppe wird aus Tomaten, Zwiebeln, Knoblauch und etwas Olivenöl gekocht.",
            "Das neue Restaurant am Markt serviert Reis mit gegrilltem Fisch und Gemüse.",
            "Koche die Nudeln zehn Minuten lang und gib dann die Soße und geriebenen Käse dazu.",
        ],
        "technology": [
            "Die Firma stellte ein neues Telefon mit einem schnelleren Prozessor und einer besseren Kamera vor.",
            "Ingenieure schrieben eine Software, mit der der Computer Texte zwischen vielen Sprachen übersetzt.",
            "Die meisten Menschen lesen die Nachrichten heute im Internet, statt eine Zeitung zu kaufen.",
            "Aktualisiere deinen Laptop regelmäßig, damit Sicherheitslücken im System geschlossen werden.",
        ],
        "nature": [
            "Die ganze Nacht fiel starker Regen über den Bergen, und der Fluss stieg schnell an.",
            "Im Frühling ist der Wald voller Vögel, Blumen und junger grüner Blätter.",
            "Im Winter friert der See zu, und Schnee bedeckt die Hügel rund um das Dorf.",
            "Die Bauern hoffen, dass die Trockenheit bald endet, denn die Felder brauchen Wasser.",
        ],
    },
    "es": {
        "sports": [
            "El equipo local marcó dos goles en la segunda parte y ganó el partido de fútbol.",
            "Ella entrena en la piscina cada mañana antes del campeonato nacional.",
            "El entrenador dijo que los jugadores deben correr más y defender mejor en el próximo partido.",
            "Miles de aficionados llenaron el estadio para ver la final del torneo de tenis.",
        ],
        "food": [
            "Mi abuela hace pan fresco cada domingo y lo sirve con mantequilla y miel.",
            "Esta sopa se prepara con tomates, cebollas, ajo y un poco de aceite de oliva.",
            "El nuevo restaurante cerca del mercado sirve arroz con pescado a la parrilla y verduras.",
            "Cuece la pasta durante diez minutos y después añade la salsa y un poco de queso rallado.",
        ],
        "technology": [
            "La empresa presentó un teléfono nuevo con un procesador más rápido y una cámara mejor.",
            "Los ingenieros escribieron un programa que permite al ordenador traducir textos entre muchos idiomas.",
            "Hoy la mayoría de la gente lee las noticias en internet en lugar de comprar un periódico.",
            "Actualiza tu portátil con frecuencia para corregir los problemas de seguridad del sistema.",
        ],
        "nature": [
            "Una lluvia intensa cayó sobre las montañas toda la noche y el río creció rápidamente.",
            "En primavera el bosque está lleno de pájaros, flores y hojas verdes nuevas.",
            "El lago se congela en invierno y la nieve cubre las colinas alrededor del pueblo.",
            "Los campesinos esperan que la sequía termine pronto porque los campos necesitan agua.",
        ],
    },
    "ru": {
        "sports": [
            "Хозяева поля забили два гола во втором тайме и выиграли футбольный матч.",
            "Она каждое утро тренируется в бассейне перед национальным чемпионатом.",
            "Тренер сказал, что в следующей игре игрокам нужно больше бегать и лучше защищаться.",
            "Тысячи болельщиков заполнили стадион, чтобы посмотреть финал теннисного турнира.",
        ],
        "food": [
            "Моя бабушка каждое воскресенье печёт свежий хлеб и подаёт его с маслом и мёдом.",
            "Этот суп готовят из помидоров, лука, чеснока и небольшого количества оливкового масла.",
            "Новый ресторан возле рынка подаёт рис с жареной рыбой и овощами.",
            "Варите макароны десять минут, затем добавьте соус и немного тёртого сыра.",
        ],
        "technology": [
            "Компания выпустила новый телефон с более быстрым процессором и лучшей камерой.",
            "Инженеры написали программу, которая позволяет компьютеру переводить тексты на многие языки.",
            "Сегодня большинство людей читают новости в интернете, а не покупают газету.",
            "Регулярно обновляйте ноутбук, чтобы исправлять проблемы безопасности в системе.",
        ],
        "nature": [
            "Всю ночь над горами шёл сильный дождь, и река быстро поднялась.",
            "Весной лес полон птиц, цветов и молодых зелёных листьев.",
            "Зимой озеро замерзает, и снег покрывает холмы вокруг деревни.",
            "Фермеры надеются, что засуха скоро закончится, потому что полям нужна вода.",
        ],
    },
    "zh": {
        "sports": [
            "主队在下半场打进两球，最终赢得了这场足球比赛。",
            "她每天早上都在游泳池训练，准备参加全国锦标赛。",
            "教练说球员们在下一场比赛中必须多跑动，并且加强防守。",
            "成千上万的球迷挤满了体育场，观看网球锦标赛的决赛。",
        ],
        "food": [
            "我奶奶每个星期天都会烤新鲜的面包，配上黄油和蜂蜜。",
            "这道汤是用西红柿、洋葱、大蒜和一点橄榄油做成的。",
            "市场附近新开的饭店供应米饭、烤鱼和各种蔬菜。",
            "先把面条煮十分钟，然后加入酱汁和一些奶酪碎。",
        ],
        "technology": [
            "这家公司发布了一款新手机，处理器更快，相机也更好。",
            "工程师们编写了一个软件，让电脑可以在多种语言之间翻译文本。",
            "现在大多数人都在互联网上看新闻，而不是去买报纸。",
            "请定期更新你的笔记本电脑，这样系统的安全问题才能得到修复。",
        ],
        "nature": [
            "大雨在山区下了一整夜，河水很快就涨了起来。",
            "春天的森林里到处都是小鸟、鲜花和嫩绿的树叶。",
            "冬天湖面会结冰，村子周围的山坡都被白雪覆盖。",
            "农民们希望干旱早点结束，因为田地急需浇水。",
        ],
    },
    "ja": {
        "sports": [
            "地元のチームは後半に二点を決めて、サッカーの試合に勝ちました。",
            "彼女は全国選手権に向けて、毎朝プールで練習しています。",
            "監督は、次の試合では選手たちがもっと走って守備を強くするべきだと言いました。",
            "何千人ものファンがテニス大会の決勝を見るためにスタジアムに集まりました。",
        ],
        "food": [
            "祖母は毎週日曜日に新しいパンを焼いて、バターと蜂蜜と一緒に出してくれます。",
            "このスープはトマトと玉ねぎとにんにく、それに少しのオリーブオイルで作ります。",
            "市場の近くにできた新しいレストランでは、焼き魚と野菜のご飯が食べられます。",
            "パスタを十分間ゆでてから、ソースと粉チーズを加えてください。",
        ],
        "technology": [
            "その会社は、より速いプロセッサとより良いカメラを備えた新しい電話を発表しました。",
            "技術者たちは、コンピュータが多くの言語の間で文章を翻訳できるソフトを作りました。",
            "今では多くの人が新聞を買う代わりに、インターネットでニュースを読んでいます。",
            "システムの安全上の問題を直すために、ノートパソコンを定期的に更新してください。",
        ],
        "nature": [
            "一晩中山に激しい雨が降り、川の水位がすぐに上がりました。",
            "春の森は鳥や花や若い緑の葉でいっぱいになります。",
            "冬になると湖は凍り、村の周りの丘は雪でおおわれます。",
            "畑には水が必要なので、農家の人たちは日照りが早く終わることを願っています。",
        ],
    },
    "ar": {
        "sports": [
            "سجل الفريق المحلي هدفين في الشوط الثاني وفاز بمباراة كرة القدم.",
            "تتدرب في المسبح كل صباح استعدادا للبطولة الوطنية.",
            "قال المدرب إن على اللاعبين أن يركضوا أكثر وأن يدافعوا بشكل أفضل في المباراة القادمة.",
            "ملأ آلاف المشجعين الملعب لمشاهدة نهائي بطولة التنس.",
        ],
        "food": [
            "تخبز جدتي خبزا طازجا كل يوم أحد وتقدمه مع الزبدة والعسل.",
            "يتم تحضير هذا الحساء من الطماطم والبصل والثوم وقليل من زيت الزيتون.",
            "يقدم المطعم الجديد قرب السوق الأرز مع السمك المشوي والخضار.",
            "اطبخ المعكرونة لمدة عشر دقائق ثم أضف الصلصة وقليلا من الجبن المبشور.",
        ],
        "technology": [
            "أطلقت الشركة هاتفا جديدا بمعالج أسرع وكاميرا أفضل.",
            "كتب المهندسون برنامجا يسمح للحاسوب بترجمة النصوص بين لغات كثيرة.",
            "يقرأ معظم الناس الأخبار اليوم على الإنترنت بدلا من شراء الصحيفة.",
            "حدّث حاسوبك المحمول بانتظام حتى يتم إصلاح مشاكل الأمان في النظام.",
        ],
        "nature": [
            "هطلت أمطار غزيرة على الجبال طوال الليل وارتفع منسوب النهر بسرعة.",
            "في الربيع تمتلئ الغابة بالطيور والزهور والأوراق الخضراء الصغيرة.",
            "تتجمد البحيرة في الشتاء ويغطي الثلج التلال حول القرية.",
            "يأمل المزارعون أن ينتهي الجفاف قريبا لأن الحقول تحتاج إلى الماء.",
        ],
    },
    "hi": {
        "sports": [
            "घरेलू टीम ने दूसरे हाफ में दो गोल किए और फुटबॉल मैच जीत लिया।",
            "वह राष्ट्रीय प्रतियोगिता से पहले हर सुबह स्विमिंग पूल में अभ्यास करती है।",
            "कोच ने कहा कि अगले मैच में खिलाड़ियों को ज़्यादा दौड़ना और बेहतर बचाव करना होगा।",
            "टेनिस टूर्नामेंट का फाइनल देखने के लिए हज़ारों प्रशंसकों से स्टेडियम भर गया।",
        ],
        "food": [
            "मेरी दादी हर रविवार ताज़ी रोटी बनाती हैं और उसे मक्खन और शहद के साथ परोसती हैं।",
            "यह सूप टमाटर, प्याज़, लहसुन और थोड़े से जैतून के तेल से बनाया जाता है।",
            "बाज़ार के पास का नया रेस्टोरेंट भुनी हुई मछली और सब्ज़ियों के साथ चावल परोसता है।",
            "पास्ता को दस मिनट तक उबालें, फिर उसमें सॉस और थोड़ा कसा हुआ पनीर डालें।",
        ],
        "technology": [
            "कंपनी ने तेज़ प्रोसेसर और बेहतर कैमरे वाला एक नया फ़ोन जारी किया।",
            "इंजीनियरों ने ऐसा सॉफ़्टवेयर लिखा जिससे कंप्यूटर कई भाषाओं के बीच अनुवाद कर सकता है।",
            "आजकल ज़्यादातर लोग अख़बार ख़रीदने के बजाय इंटरनेट पर समाचार पढ़ते हैं।",
            "अपने लैपटॉप को नियमित रूप से अपडेट करें ताकि सिस्टम की सुरक्षा समस्याएँ ठीक हो सकें।",
        ],
        "nature": [
            "पूरी रात पहाड़ों पर भारी बारिश हुई और नदी का पानी तेज़ी से बढ़ गया।",
            "वसंत में जंगल पक्षियों, फूलों और नई हरी पत्तियों से भर जाता है।",
            "सर्दियों में झील जम जाती है और गाँव के चारों ओर की पहाड़ियाँ बर्फ़ से ढक जाती हैं।",
            "किसान आशा करते हैं कि सूखा जल्दी ख़त्म होगा क्योंकि खेतों को पानी की ज़रूरत है।",
        ],
    },
    "sw": {
        "sports": [
            "Timu ya nyumbani ilifunga mabao mawili katika kipindi cha pili na kushinda mechi ya mpira wa miguu.",
            "Yeye hufanya mazoezi katika bwawa la kuogelea kila asubuhi kabla ya mashindano ya kitaifa.",
            "Kocha alisema wachezaji lazima wakimbie zaidi na walinde vizuri katika mechi ijayo.",
            "Maelfu ya mashabiki walijaza uwanja kutazama fainali ya mashindano ya tenisi.",
        ],
        "food": [
            "Bibi yangu huoka mkate mpya kila Jumapili na huupakua pamoja na siagi na asali.",
            "Supu hii hupikwa kwa nyanya, vitunguu, kitunguu saumu na mafuta kidogo ya zeituni.",
            "Mgahawa mpya karibu na soko unauza wali pamoja na samaki wa kuchoma na mboga.",
            "Chemsha tambi kwa dakika kumi, kisha ongeza mchuzi na jibini kidogo.",
        ],
        "technology": [
            "Kampuni ilizindua simu mpya yenye kichakataji chenye kasi zaidi na kamera bora.",
            "Wahandisi waliandika programu inayoruhusu kompyuta kutafsiri maandishi kati ya lugha nyingi.",
            "Siku hizi watu wengi husoma habari kwenye mtandao badala ya kununua gazeti.",
            "Sasisha kompyuta yako mara kwa mara ili matatizo ya usalama katika mfumo yarekebishwe.",
        ],
        "nature": [
            "Mvua kubwa ilinyesha milimani usiku kucha na maji ya mto yakapanda haraka.",
            "Wakati wa masika msitu hujaa ndege, maua na majani mabichi.",
            "Wakulima wanatumaini kwamba ukame utaisha hivi karibuni kwa sababu mashamba yanahitaji maji.",
            "Upepo mkali ulivuma kutoka baharini na mawingu meusi yakafunika kijiji chote.",
        ],
    },
    "th": {
        "sports": [
            "ทีมเจ้าบ้านยิงได้สองประตูในครึ่งหลังและชนะการแข่งขันฟุตบอลนัดนี้",
            "เธอฝึกซ้อมที่สระว่ายน้ำทุกเช้าก่อนการแข่งขันชิงแชมป์ระดับประเทศ",
            "โค้ชบอกว่านักเตะต้องวิ่งมากขึ้นและเล่นเกมรับให้ดีขึ้นในนัดต่อไป",
            "แฟนกีฬาหลายพันคนเข้าไปเต็มสนามเพื่อชมรอบชิงชนะเลิศของการแข่งขันเทนนิส",
        ],
        "food": [
            "คุณยายของฉันอบขนมปังสดทุกวันอาทิตย์และเสิร์ฟกับเนยและน้ำผึ้ง",
            "ซุปนี้ทำจากมะเขือเทศ หัวหอม กระเทียม และน้ำมันมะกอกเล็กน้อย",
            "ร้านอาหารใหม่ใกล้ตลาดขายข้าวกับปลาย่างและผักหลายชนิด",
            "ต้มเส้นพาสต้าประมาณสิบนาที แล้วใส่ซอสและชีสขูดลงไปเล็กน้อย",
        ],
        "technology": [
            "บริษัทเปิดตัวโทรศัพท์รุ่นใหม่ที่มีหน่วยประมวลผลเร็วขึ้นและกล้องที่ดีกว่าเดิม",
            "วิศวกรเขียนซอฟต์แวร์ที่ช่วยให้คอมพิวเตอร์แปลข้อความได้หลายภาษา",
            "ทุกวันนี้คนส่วนใหญ่อ่านข่าวบนอินเทอร์เน็ตแทนการซื้อหนังสือพิมพ์",
            "ควรอัปเดตแล็ปท็อปของคุณเป็นประจำเพื่อแก้ไขปัญหาความปลอดภัยของระบบ",
        ],
        "nature": [
            "ฝนตกหนักบนภูเขาตลอดทั้งคืนและน้ำในแม่น้ำก็เพิ่มขึ้นอย่างรวดเร็ว",
            "ในฤดูใบไม้ผลิ ป่าเต็มไปด้วยนก ดอกไม้ และใบไม้สีเขียวอ่อน",
            "ในฤดูหนาวทะเลสาบจะกลายเป็นน้ำแข็งและหิมะปกคลุมเนินเขารอบหมู่บ้าน",
            "ชาวนาหวังว่าความแห้งแล้งจะหมดไปในเร็ววันเพราะทุ่งนาต้องการน้ำ",
        ],
    },
    "eu": {
        "sports": [
            "Etxeko taldeak bi gol sartu zituen bigarren zatian eta futbol partida irabazi zuen.",
            "Goizero igerilekuan entrenatzen da txapelketa nazionalaren aurretik.",
            "Entrenatzaileak esan zuen jokalariek gehiago korrika egin behar dutela hurrengo partidan.",
            "Milaka zaleek estadioa bete zuten tenis txapelketaren finala ikusteko.",
        ],
        "food": [
            "Nire amonak ogi freskoa egiten du igandero eta gurinarekin eta eztiarekin ematen du.",
            "Zopa hau tomate, tipula, baratxuri eta oliba olio pixka batekin egiten da.",
            "Merkatutik gertu dagoen jatetxe berriak arroza ematen du arrain erreekin eta barazkiekin.",
            "Egosi pasta hamar minutuz, eta gero gehitu saltsa eta gazta birrindua.",
        ],
        "technology": [
            "Enpresak telefono berri bat aurkeztu zuen, prozesagailu azkarrago eta kamera hobearekin.",
            "Ingeniariek ordenagailuari hizkuntza askoren artean testuak itzultzeko aukera ematen dion programa idatzi zuten.",
            "Gaur egun jende gehienak interneten irakurtzen ditu albisteak egunkaria erosi beharrean.",
            "Eguneratu zure ordenagailu eramangarria maiz, sistemaren segurtasun arazoak konpontzeko.",
        ],
        "nature": [
            "Euri handia egin zuen mendietan gau osoan, eta ibaiak azkar gora egin zuen.",
            "Udaberrian basoa txoriz, lorez eta hosto berde gaztez beteta dago.",
            "Neguan lakua izozten da, eta elurrak herri inguruko muinoak estaltzen ditu.",
            "Nekazariek lehorteak laster amaitzea espero dute, soroek ura behar baitute.",
        ],
    },
}

# Documents in languages the demo does not ask for (planted "unexpected language" noise).
OTHER_LANGUAGE = [
    "Il treno per Milano parte alle otto e arriva a mezzogiorno, se non ci sono ritardi.",
    "A biblioteca da cidade abre todos os dias às nove horas e fecha às seis da tarde.",
    "De kinderen spelen elke middag in het park achter de school, ook als het regent.",
    "Pociąg do Krakowa odjeżdża o ósmej rano, a bilety można kupić na dworcu.",
    "Kesäisin perhe lähtee mökille järven rannalle ja uimme joka päivä.",
    "Bu akşam arkadaşlarımla birlikte sahilde yürüyüş yapıp balık yiyeceğiz.",
]

BOILERPLATE_DOCS = [
    "We use cookies to improve your experience. Accept all cookies to continue.",
    "Home | About | Contact | Blog",
    "Please enable JavaScript in your browser to view this page.",
    "Copyright 2026 Example Media. All rights reserved.",
    "Subscribe to our newsletter for weekly updates!",
    "Privacy Policy",
]

BOILERPLATE_LINES = [
    "This site uses cookies.",
    "Home | News | Contact",
    "© 2026 All rights reserved.",
]

TOO_SHORT = ["ok", "Hi!", "12345", "Merci", "谢谢", "...", "👍👍", "Ja."]

GIBBERISH = [
    "qzxv wkpl zzrt mnbv xcvq plkj hgfd wqzx vbnm",
    "#### @@@ %%% &&& *** ### @@@ %%% &&& ***",
    "kjh4 8asd 9zxc qw3r ty7u 0iop lkj2 mnb5 vcx6",
]
